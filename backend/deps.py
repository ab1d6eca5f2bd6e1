"""Annotated dependencies: what a route may ask for, taken from the lifespan state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from anyio.abc import TaskGroup
from fastapi import Depends, Query, Request

from backend.auth.principal import Authenticator, Principal
from backend.config import Settings
from backend.db.database import Database as DatabaseService
from backend.services.chat_service import ChatService
from backend.services.conversation_service import ConversationService
from backend.services.mcp_service import McpService
from backend.services.user_service import UserService


class AppState(TypedDict):
    settings: Settings
    mcp: McpService
    chat: ChatService
    conversations: ConversationService
    database: DatabaseService
    users: UserService
    authenticator: Authenticator
    watchers: TaskGroup  # watches requests for their client's disconnect


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that hands a route one of the lifespan's services (typed by the Annotated alias below).

    A coroutine function, because FastAPI runs a plain function dependency on a worker thread."""

    async def dependency(request: Request) -> Any:
        return getattr(request.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


async def _current_user(request: Request) -> Principal:
    authenticator: Authenticator = request.state.authenticator
    return await authenticator.authenticate(request)


CurrentUser = Annotated[Principal, Depends(_current_user)]
Chat = Annotated[ChatService, Depends(_from_state("chat"))]
Conversations = Annotated[ConversationService, Depends(_from_state("conversations"))]
Database = Annotated[DatabaseService, Depends(_from_state("database"))]
Mcp = Annotated[McpService, Depends(_from_state("mcp"))]
Users = Annotated[UserService, Depends(_from_state("users"))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
