"""Annotated dependencies: what a route may ask for, taken from the lifespan state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from anyio.abc import TaskGroup
from fastapi import Depends, Query, Request

from backend.auth.principal import Authenticator, Principal
from backend.auth.scopes import ROUTE_SCOPES
from backend.config import Settings
from backend.db.database import Database as DatabaseService
from backend.errors import ForbiddenError, NotFoundError
from backend.services.api_key_service import ApiKeyService
from backend.services.audit_log import AuditLog
from backend.services.chat_service import ChatService
from backend.services.conversation_service import ConversationService
from backend.services.mcp_service import McpService
from backend.services.rate_limits import RateLimits
from backend.services.session_service import SessionService
from backend.services.usage_limits import UsageLimits
from backend.services.user_service import UserService


class AppState(TypedDict):
    settings: Settings
    mcp: McpService
    chat: ChatService
    conversations: ConversationService
    database: DatabaseService
    users: UserService
    api_keys: ApiKeyService
    audit: AuditLog
    sessions: SessionService | None  # None in single-user mode: nobody signs in
    rate_limits: RateLimits
    usage: UsageLimits
    authenticator: Authenticator
    watchers: TaskGroup  # watches requests for their client's disconnect


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that hands a route one of the lifespan's services (typed by the Annotated alias below).

    A coroutine function, because FastAPI runs a plain function dependency on a worker thread."""

    async def dependency(request: Request) -> Any:
        return getattr(request.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


async def current_user(request: Request) -> Principal:
    """The caller, found by the auth mode's authenticator; every protected router depends on it (and OpenAPI says
    so: backend/api/openapi.py).

    Raises:
        UnauthorizedError: multi-user mode, and no valid credential was sent.
        ForbiddenError: an API key without the route's scope (backend/auth/scopes.py).
    """
    authenticator: Authenticator = request.state.authenticator
    user = await authenticator.authenticate(request)
    if user.scopes is not None:  # an API key: does it reach this route?
        route = request.scope.get("route")
        key = (request.method, getattr(route, "path", ""))
        if key not in ROUTE_SCOPES:
            raise ForbiddenError("API keys cannot use this route.")
        scope = ROUTE_SCOPES[key]
        if scope is not None and scope not in user.scopes:
            raise ForbiddenError(f"This API key lacks the {scope.value} scope.")
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]


async def require_admin(user: CurrentUser) -> Principal:
    """Raises:
    ForbiddenError: the caller is not an admin."""
    if not user.is_admin:
        raise ForbiddenError("Only an admin may do this.")
    return user


Chat = Annotated[ChatService, Depends(_from_state("chat"))]
Conversations = Annotated[ConversationService, Depends(_from_state("conversations"))]
Database = Annotated[DatabaseService, Depends(_from_state("database"))]
Mcp = Annotated[McpService, Depends(_from_state("mcp"))]
Usage = Annotated[UsageLimits, Depends(_from_state("usage"))]
Users = Annotated[UserService, Depends(_from_state("users"))]
ApiKeys = Annotated[ApiKeyService, Depends(_from_state("api_keys"))]
Audit = Annotated[AuditLog, Depends(_from_state("audit"))]


class SignInDisabledError(NotFoundError):
    slug, title = "sign-in-disabled", "Sign-in is off"


async def sign_in_enabled(request: Request) -> SessionService:
    """Raises:
    SignInDisabledError: single-user mode."""
    sessions: SessionService | None = request.state.sessions
    if sessions is None:
        raise SignInDisabledError(
            "MCP Chat runs in single-user mode (MCPCHAT_AUTH): nobody signs in, every request is the owner's."
        )
    return sessions


Sessions = Annotated[SessionService, Depends(sign_in_enabled)]
Rates = Annotated[RateLimits, Depends(_from_state("rate_limits"))]
AppConfig = Annotated[Settings, Depends(_from_state("settings"))]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
