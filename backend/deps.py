"""Annotated dependencies: what a route may ask for, taken from the lifespan state."""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Query, Request

from backend.config import Settings
from backend.services.mcp_service import McpService


class AppState(TypedDict):
    settings: Settings
    mcp: McpService


def _mcp(request: Request) -> McpService:
    service: McpService = request.state.mcp
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


Mcp = Annotated[McpService, Depends(_mcp)]
AppSettings = Annotated[Settings, Depends(_settings)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
