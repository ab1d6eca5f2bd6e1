"""Request and response models of the HTTP API that are not domain models themselves."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from backend.errors import BadRequestError
from backend.mcp.models import ServerState

T = TypeVar("T")
MAX_PAGE_SIZE = 1000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """Every list answers with this shape; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


def paginate(items: Sequence[T], limit: int, cursor: str | None) -> Page[T]:
    """Cut one page from a stable list; the cursor is an opaque offset.

    Raises:
        BadRequestError: the cursor was not issued by this API.
    """
    start = 0
    if cursor is not None:
        try:
            start = int(base64.urlsafe_b64decode(cursor.encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadRequestError(f"cursor {cursor!r} is not valid; use the next_cursor of a previous page") from None
        if start < 0:
            raise BadRequestError(f"cursor {cursor!r} is not valid; use the next_cursor of a previous page")
    end = start + limit
    next_cursor = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return Page[T](items=list(items[start:end]), next_cursor=next_cursor)


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
    result: JsonValue | None  # {"content": [...MCP blocks], "structured_content": ...}; null on failure
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


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class TurnResponse(BaseModel):
    status: str  # completed | cancelled
    message: MessageOut | None  # the final assistant message; null when the turn was cancelled before one
    tool_calls: list[ToolCallOut]


class CancelResponse(BaseModel):
    cancelled_turns: int
