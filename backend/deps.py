"""Annotated dependencies: what a route may ask for, taken from the lifespan state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from anyio.abc import TaskGroup
from fastapi import Depends, Query, Request

from backend.config import Settings
from backend.db.database import Database as DatabaseService
from backend.db.repositories import ConversationStore
from backend.services.chat_service import ChatService
from backend.services.mcp_service import McpService


class AppState(TypedDict):
    settings: Settings
    mcp: McpService
    store: ConversationStore
    chat: ChatService
    database: DatabaseService
    watchers: TaskGroup  # watches requests for their client's disconnect


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that hands a route one of the lifespan's services (typed by the Annotated alias below).

    A coroutine function, because FastAPI runs a plain function dependency on a worker thread: a thread hop
    per request, for a getattr."""

    async def dependency(request: Request) -> Any:
        return getattr(request.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


def chat_of(request: Request) -> ChatService:
    """The chat service, for the chat routes, which take the request anyway: as a dependency it cost a turn
    more than this lookup (FastAPI's solve_dependencies: 65 us a turn, 1% of its CPU)."""
    chat: ChatService = request.state.chat
    return chat


def store_of(request: Request) -> ConversationStore:
    """The conversation store, for the chat routes (see `chat_of`)."""
    store: ConversationStore = request.state.store
    return store


Store = Annotated[ConversationStore, Depends(_from_state("store"))]
Chat = Annotated[ChatService, Depends(_from_state("chat"))]
Database = Annotated[DatabaseService, Depends(_from_state("database"))]
Mcp = Annotated[McpService, Depends(_from_state("mcp"))]
AppSettings = Annotated[Settings, Depends(_from_state("settings"))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
