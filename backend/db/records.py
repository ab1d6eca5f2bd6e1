"""The chat path's rows as plain values: a turn, its messages and their tool calls, as written and kept by a turn.

They mirror the ORM models column for column (and name their table, so the store inserts them the same way),
but building one is a dataclass's __init__: a mapped instance's instrumentation cost more than its INSERT.
Reads for the API still return the ORM models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import FromClause

from backend.db.models import Message, ToolCall, Turn


@dataclass(slots=True)
class TurnRecord:
    __table__: ClassVar[FromClause] = Turn.__table__

    id: str
    conversation_id: str
    status: str
    tokens: int
    started_at: datetime
    finished_at: datetime | None = None


@dataclass(slots=True)
class ToolCallRecord:
    __table__: ClassVar[FromClause] = ToolCall.__table__

    id: str
    message_id: str
    conversation_id: str
    seq: int
    call_id: str
    name: str
    server: str | None
    arguments_json: str
    status: str
    created_at: datetime
    result: dict[str, Any] | None = None
    result_text: str | None = None
    is_error: bool = False
    duration_ms: float | None = None


@dataclass(slots=True)
class MessageRecord:
    __table__: ClassVar[FromClause] = Message.__table__

    id: str
    conversation_id: str
    turn_id: str
    seq: int
    role: str
    content: str
    status: str
    created_at: datetime
    tool_calls: list[ToolCallRecord] = field(default_factory=list)  # not a column: inserted as their own rows


Record = TurnRecord | MessageRecord | ToolCallRecord
