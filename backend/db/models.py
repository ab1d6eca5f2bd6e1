"""Tables: users, their conversations, the turns in them, their messages and the tool calls those messages asked for.

Tool results are not separate messages: each tool call row carries its result, and the OpenAI-format history
(an assistant message with tool_calls, then one `tool` message per call) is derived from it, so a tool-call
message is never stored without a place for its results.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from backend.db.triggers import TURN_FINISHED_TRIGGERS


def new_id() -> str:
    """A version-7 UUID (RFC 9562) in its usual text form: the millisecond it was made, then 74 random bits.

    Ids made later sort later, so a table's primary-key index and the indexes that lead with another row's id
    (a message's turn, a tool call's message) grow at their right edge: each insert dirties the pages the last
    one did, not one random page per index in a file larger than the database's page cache. Built from
    os.urandom directly, without a UUID object, as ids are made several times a turn."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 9562 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime, whichever driver read it: SQLite's gives it back without its offset."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TurnStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process stopped mid-turn; found and marked at the next start


class ToolCallStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class UserRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


# The built-in owner account: who every request is in single-user mode, and whose the conversations made before
# accounts existed are (migration 0005). It has no password until one is set.
OWNER_ID = "00000000-0000-7000-8000-000000000000"
OWNER_EMAIL = "owner@localhost"


def owner_values() -> dict[str, Any]:
    """The owner account's row, as a new database and migration 0005 insert it."""
    return {
        "id": OWNER_ID,
        "email": OWNER_EMAIL,
        "name": "Owner",
        "password_hash": None,
        "role": UserRole.ADMIN.value,
        "is_disabled": False,
        "created_at": utcnow(),
        "last_login_at": None,
    }


class ConversationKind(StrEnum):
    CHAT = "chat"
    LEGACY = "legacy"  # the history behind /api/chat


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased: one account per address
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2id (PHC string); None: cannot sign in
    role: Mapped[str] = mapped_column(String(16), default=UserRole.MEMBER.value)
    is_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshToken(Base):
    """One refresh token of a sign-in session (its family): each use replaces it with the next one."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[str] = mapped_column(String(36))  # the sign-in it descends from
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the token (hex)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)  # replaced by the next token
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"), Index("ix_refresh_tokens_user", "user_id"))


class ApiKey(Base):
    """A key an account made for one client: stored as a hash, shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the key (hex)
    scopes: Mapped[str] = mapped_column(String(100))  # space-separated, as OAuth writes scopes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_api_keys_user", "user_id", "created_at"),)


class AuditEvent(Base):
    """A security-relevant event (sign-ins, keys, role changes): who, what, to whom, from where. Never a secret."""

    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(64))  # e.g. auth.sign_in.failed
    actor_id: Mapped[str | None] = mapped_column(String(36))  # the account that acted, when known
    subject_id: Mapped[str | None] = mapped_column(String(36))  # the account or key acted on
    address: Mapped[str | None] = mapped_column(String(64))  # the client's address
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_audit_events_created", "created_at", "id"),)


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Never None once written; nullable because SQLite cannot add a NOT NULL foreign-key column to a table that
    # has rows (migration 0005).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=ConversationKind.CHAT.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped by the database whenever one of its finished turns is written (backend/db/triggers.py).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_conversations_user_created", "user_id", "created_at", "id"),
        Index("ix_conversations_user_kind_created", "user_id", "kind", "created_at"),
    )


class Turn(Base):
    """One user message and everything the model and tools did to answer it."""

    __tablename__ = "turns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=TurnStatus.RUNNING.value)
    # Tokens of everything this turn adds to the model's context, summed when it ends: context building
    # reads these instead of re-counting old messages.
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    messages: Mapped[list[Message]] = relationship(
        back_populates="turn", order_by="Message.seq", cascade="all, delete-orphan", passive_deletes=True
    )

    # Covers the context query (see repositories._FINISHED_TURNS): answered from the index alone.
    __table_args__ = (
        Index("ix_turns_context", "conversation_id", "started_at", "id", "status", "finished_at", "tokens"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # position within the turn
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="completed")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    turn: Mapped[Turn] = relationship(back_populates="messages")
    tool_calls: Mapped[list[ToolCall]] = relationship(
        back_populates="message", order_by="ToolCall.seq", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index("ix_messages_turn_seq", "turn_id", "seq"),)


class ToolCall(Base):
    __tablename__ = "tool_calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # position within the message
    call_id: Mapped[str] = mapped_column(String(100))  # the provider's id, echoed in the tool result message
    name: Mapped[str] = mapped_column(String(200))  # the namespaced name the model used
    server: Mapped[str | None] = mapped_column(String(100))  # None: the model named no known tool
    arguments_json: Mapped[str] = mapped_column(Text)  # exactly what the model sent (may be invalid JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # content blocks + structured content
    result_text: Mapped[str | None] = mapped_column(Text, default=None)  # what the model was shown
    is_error: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=ToolCallStatus.RUNNING.value)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="tool_calls")

    __table_args__ = (Index("ix_tool_calls_message_seq", "message_id", "seq"),)


@event.listens_for(Turn.__table__, "after_create")
def _create_turn_finished_triggers(_table: object, connection: Connection, **_kw: object) -> None:
    for statement in TURN_FINISHED_TRIGGERS.get(connection.dialect.name, ()):
        connection.exec_driver_sql(statement)
