"""Annotated dependencies: what a route may ask for, taken from the lifespan state."""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.db.repositories import ConversationStore
from backend.services.chat_service import ChatService
from backend.services.mcp_service import McpService


class AppState(TypedDict):
    settings: Settings
    mcp: McpService
    store: ConversationStore
    chat: ChatService
    database: AsyncEngine


def _mcp(request: Request) -> McpService:
    service: McpService = request.state.mcp
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def _store(request: Request) -> ConversationStore:
    store: ConversationStore = request.state.store
    return store


def _chat(request: Request) -> ChatService:
    chat: ChatService = request.state.chat
    return chat


def _database(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.state.database
    return engine


Store = Annotated[ConversationStore, Depends(_store)]
Chat = Annotated[ChatService, Depends(_chat)]
Database = Annotated[AsyncEngine, Depends(_database)]
Mcp = Annotated[McpService, Depends(_mcp)]
AppSettings = Annotated[Settings, Depends(_settings)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
