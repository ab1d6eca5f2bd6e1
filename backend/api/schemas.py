"""Request and response models of the HTTP API that are not domain models themselves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, SecretStr

from backend.auth.principal import Scope
from backend.cursors import decode_offset, encode_cursor
from backend.db.models import UserRole
from backend.mcp.models import ServerState

T = TypeVar("T")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """Every list answers with this shape; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


def paginate(items: Sequence[T], limit: int, cursor: str | None) -> Page[T]:
    """Cut one page from a stable list; the cursor holds the offset the page starts at.

    Raises:
        BadRequestError: the cursor was not issued by this API.
    """
    start = decode_offset(cursor) if cursor is not None else 0
    end = start + limit
    return Page[T](items=list(items[start:end]), next_cursor=encode_cursor(end) if end < len(items) else None)


class ToolCallRequest(_Request):
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class PromptGetRequest(_Request):
    arguments: dict[str, str] = Field(default_factory=dict)


class ReconnectResponse(BaseModel):
    server: ServerState


class HealthResponse(BaseModel):
    status: str


class ReadinessResponse(BaseModel):
    status: str
    database: str
    servers: dict[str, str]


# -- conversations ---------------------------------------------------------------------------------


class ConversationCreate(_Request):
    title: str | None = Field(default=None, max_length=200)


class ConversationUpdate(_Request):
    title: str | None = Field(max_length=200)


class MessageCreate(_Request):
    content: str = Field(min_length=1, description="The user's message (at most MCPCHAT_MAX_MESSAGE_CHARS)")


class ToolCallOut(BaseModel):
    id: str
    name: str
    server: str | None
    arguments: JsonValue  # the object the model sent, or its raw text when that was not valid JSON
    # {"content": [...MCP blocks], "structured_content": ...}, cut at MCPCHAT_TOOL_RESULT_STORE_MAX_BYTES (then with
    # a last text block saying so and "truncated": {"original_bytes"}); null on failure
    result: JsonValue | None
    result_text: str | None  # what the model was shown
    is_error: bool
    status: str
    duration_ms: float | None


class MessageOut(BaseModel):
    id: str
    role: str
    content: str
    tool_calls: list[ToolCallOut]
    status: str
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    title: str | None
    kind: str
    created_at: datetime
    updated_at: datetime


class TurnResponse(BaseModel):
    status: str  # completed | cancelled
    message: MessageOut | None  # the final assistant message; null when the turn was cancelled before one
    tool_calls: list[ToolCallOut]


class CancelResponse(BaseModel):
    cancelled_turns: int


class MeOut(BaseModel):
    id: str
    email: str
    name: str | None
    role: str
    auth_method: str  # "single-user": no sign-in, every request is the owner's
    created_at: datetime


class SignUpRequest(_Request):
    email: str = Field(max_length=320)
    password: SecretStr
    name: str | None = Field(default=None, max_length=200)


class SignInRequest(_Request):
    email: str = Field(max_length=320)
    password: SecretStr


class RefreshRequest(_Request):
    refresh_token: SecretStr


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds
    refresh_token: str


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    role: str
    is_disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyCreate(_Request):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, description="chat, tools, read, admin (admins only)")
    expires_at: AwareDatetime | None = None


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str  # the key's first characters
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str  # the secret: shown this once


class UserCreate(_Request):
    email: str = Field(max_length=320)
    password: SecretStr
    name: str | None = Field(default=None, max_length=200)
    role: UserRole = UserRole.MEMBER


class UserUpdate(_Request):
    role: UserRole | None = None
    is_disabled: bool | None = None


class AuditEventOut(BaseModel):
    id: str
    created_at: datetime
    event: str
    actor_id: str | None
    subject_id: str | None
    address: str | None
    details: dict[str, JsonValue]
