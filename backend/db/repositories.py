"""ConversationStore: every read and write of conversations, turns, messages and tool calls.

Each method is one short transaction, so concurrent turns (and SQLite's single writer) never wait on a
model call or a tool call.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from backend.db.models import (
    Conversation,
    ConversationKind,
    Message,
    ToolCall,
    ToolCallStatus,
    Turn,
    TurnStatus,
    new_id,
    utcnow,
)
from backend.errors import BadRequestError, NotFoundError

# Context building looks at no more than this many of the newest finished turns, however long the
# conversation: the cost of a turn does not grow with the history.
CONTEXT_TURN_WINDOW = 256


class ConversationNotFoundError(NotFoundError):
    slug, title = "conversation-not-found", "Conversation not found"


@dataclass(frozen=True)
class NewToolCall:
    id: str
    call_id: str
    name: str
    server: str | None
    arguments_json: str


@dataclass(frozen=True)
class ToolCallOutcome:
    result: dict[str, Any] | None
    result_text: str
    is_error: bool
    status: ToolCallStatus
    duration_ms: float | None


@dataclass(frozen=True)
class ContextToolCall:
    call_id: str
    name: str
    arguments_json: str
    result_text: str | None
    status: str


@dataclass(frozen=True)
class ContextMessage:
    role: str
    content: str
    tool_calls: list[ContextToolCall]


@dataclass(frozen=True)
class ContextTurn:
    messages: list[ContextMessage]


class ConversationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], single_writer: bool = False) -> None:
        """`single_writer`: serialise write transactions in this process (SQLite, which has one writer: waiting
        here costs nothing, while colliding in SQLite means its busy handler sleeping and retrying)."""
        self._sessions = sessions
        self._write_lock = anyio.Lock() if single_writer else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        if self._write_lock is None:
            async with self._sessions.begin() as session:
                yield session
            return
        async with self._write_lock, self._sessions.begin() as session:
            yield session

    # -- conversations ---------------------------------------------------------------------------

    async def create(self, title: str | None = None, kind: ConversationKind = ConversationKind.CHAT) -> Conversation:
        async with self._write() as session:
            conversation = Conversation(id=new_id(), title=title, kind=kind.value)
            session.add(conversation)
        return conversation

    async def get(self, conversation_id: str) -> Conversation:
        async with self._sessions() as session:
            return await self._get(session, conversation_id)

    async def _get(self, session: AsyncSession, conversation_id: str) -> Conversation:
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None:
            raise ConversationNotFoundError(f"No conversation has the id {conversation_id!r}.")
        return conversation

    async def page(self, limit: int, cursor: str | None) -> tuple[list[Conversation], str | None]:
        """Newest first, keyset-paginated on (created_at, id)."""
        query = select(Conversation).order_by(Conversation.created_at.desc(), Conversation.id.desc())
        if cursor is not None:
            created_at, last_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    Conversation.created_at < created_at,
                    (Conversation.created_at == created_at) & (Conversation.id < last_id),
                )
            )
        async with self._sessions() as session:
            rows = list((await session.scalars(query.limit(limit + 1))).all())
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], _encode_cursor(last.created_at, last.id)

    async def rename(self, conversation_id: str, title: str | None) -> Conversation:
        async with self._write() as session:
            conversation = await self._get(session, conversation_id)
            conversation.title = title
            conversation.updated_at = utcnow()
        return conversation

    async def delete(self, conversation_id: str) -> None:
        async with self._write() as session:
            await self._get(session, conversation_id)
            # Children first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON, PostgreSQL always.
            for model in (ToolCall, Message, Turn):
                await session.execute(delete(model).where(model.conversation_id == conversation_id))
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))

    async def legacy(self) -> Conversation:
        """The conversation behind /api/chat: the newest legacy one, created on first use."""
        query = (
            select(Conversation)
            .where(Conversation.kind == ConversationKind.LEGACY.value)
            .order_by(Conversation.created_at.desc(), Conversation.id.desc())
            .limit(1)
        )
        async with self._sessions() as session:
            found = (await session.scalars(query)).first()
        return found if found is not None else await self.create("Legacy chat", ConversationKind.LEGACY)

    # -- turns -----------------------------------------------------------------------------------

    async def start_turn(self, conversation_id: str, content: str) -> tuple[Turn, Message]:
        """Store the user's message (before any model call) in a new running turn."""
        async with self._write() as session:
            conversation = await self._get(session, conversation_id)
            now = utcnow()
            turn = Turn(id=new_id(), conversation_id=conversation_id, started_at=now)
            message = Message(
                id=new_id(), conversation_id=conversation_id, turn_id=turn.id, seq=0, role="user", content=content
            )
            conversation.updated_at = now
            session.add_all([turn, message])
        return turn, message

    async def add_assistant_message(
        self,
        turn: Turn,
        message_id: str,
        seq: int,
        content: str,
        tool_calls: Sequence[NewToolCall] = (),
        status: str = "completed",
    ) -> Message:
        async with self._write() as session:
            message = Message(
                id=message_id,
                conversation_id=turn.conversation_id,
                turn_id=turn.id,
                seq=seq,
                role="assistant",
                content=content,
                status=status,
            )
            session.add(message)
            session.add_all(
                ToolCall(
                    id=call.id,
                    message_id=message_id,
                    conversation_id=turn.conversation_id,
                    seq=index,
                    call_id=call.call_id,
                    name=call.name,
                    server=call.server,
                    arguments_json=call.arguments_json,
                )
                for index, call in enumerate(tool_calls)
            )
        return message

    async def finish_tool_call(self, tool_call_id: str, outcome: ToolCallOutcome) -> None:
        async with self._write() as session:
            await session.execute(
                update(ToolCall)
                .where(ToolCall.id == tool_call_id)
                .values(
                    result=outcome.result,
                    result_text=outcome.result_text,
                    is_error=outcome.is_error,
                    status=outcome.status.value,
                    duration_ms=outcome.duration_ms,
                )
            )

    async def finish_turn(self, turn: Turn, status: TurnStatus, tokens: int) -> None:
        async with self._write() as session:
            await session.execute(
                update(Turn).where(Turn.id == turn.id).values(status=status.value, tokens=tokens, finished_at=utcnow())
            )
            await session.execute(
                update(ToolCall)
                .where(ToolCall.status == ToolCallStatus.RUNNING.value)
                .where(ToolCall.message_id.in_(select(Message.id).where(Message.turn_id == turn.id)))
                .values(
                    status=ToolCallStatus.CANCELLED.value, is_error=True, result_text="The tool call was cancelled."
                )
            )

    async def mark_interrupted(self) -> int:
        """At start-up: turns and tool calls a stopped process left running. Their stored messages stay."""
        async with self._write() as session:
            turns = await session.execute(
                update(Turn)
                .where(Turn.status == TurnStatus.RUNNING.value)
                .values(status=TurnStatus.INTERRUPTED.value, finished_at=utcnow())
            )
            await session.execute(
                update(ToolCall)
                .where(ToolCall.status == ToolCallStatus.RUNNING.value)
                .values(
                    status=ToolCallStatus.INTERRUPTED.value,
                    is_error=True,
                    result_text="The tool call was interrupted: MCP Chat stopped before it finished.",
                )
            )
        return int(getattr(turns, "rowcount", 0) or 0)

    # -- reading history -------------------------------------------------------------------------

    async def context_turns(self, turn: Turn, max_tokens: int) -> list[ContextTurn]:
        """The newest turns that had finished when `turn` began and fit in `max_tokens`, oldest first.

        Read as plain rows (three indexed queries, no ORM objects): this runs on every model call."""
        budget_query = (
            select(Turn.id, Turn.tokens)
            .where(Turn.conversation_id == turn.conversation_id)
            .where(Turn.status != TurnStatus.RUNNING.value)
            .where(Turn.finished_at <= turn.started_at)
            .order_by(Turn.started_at.desc(), Turn.id.desc())
            .limit(CONTEXT_TURN_WINDOW)
        )
        async with self._sessions() as session:
            chosen: list[str] = []
            used = 0
            for turn_id, tokens in (await session.execute(budget_query)).all():
                if used + tokens > max_tokens:
                    break
                used += tokens
                chosen.append(turn_id)
            if not chosen:
                return []
            message_rows = await session.execute(
                select(Message.id, Message.turn_id, Message.role, Message.content)
                .where(Message.turn_id.in_(chosen))
                .order_by(Message.turn_id, Message.seq)
            )
            call_rows = await session.execute(
                select(
                    ToolCall.message_id,
                    ToolCall.call_id,
                    ToolCall.name,
                    ToolCall.arguments_json,
                    ToolCall.result_text,
                    ToolCall.status,
                )
                .join(Message, Message.id == ToolCall.message_id)
                .where(Message.turn_id.in_(chosen))
                .order_by(ToolCall.message_id, ToolCall.seq)
            )
        calls: dict[str, list[ContextToolCall]] = {}
        for message_id, call_id, name, arguments_json, result_text, status in call_rows.all():
            calls.setdefault(message_id, []).append(ContextToolCall(call_id, name, arguments_json, result_text, status))
        turns = {turn_id: ContextTurn(messages=[]) for turn_id in chosen}
        for message_id, turn_id, role, content in message_rows.all():
            turns[turn_id].messages.append(ContextMessage(role, content, calls.get(message_id, [])))
        return [turns[turn_id] for turn_id in reversed(chosen)]

    async def history(self, conversation_id: str) -> tuple[Conversation, list[Turn]]:
        """The whole stored conversation: every turn, finished or not, oldest first."""
        async with self._sessions() as session:
            conversation = await self._get(session, conversation_id)
            return conversation, await self._turns_with_messages(session, Turn.conversation_id == conversation_id)

    async def turn(self, turn_id: str) -> Turn:
        async with self._sessions() as session:
            turns = await self._turns_with_messages(session, Turn.id == turn_id)
        return turns[0]

    async def _turns_with_messages(self, session: AsyncSession, condition: Any) -> list[Turn]:
        query = (
            select(Turn)
            .where(condition)
            .options(selectinload(Turn.messages).selectinload(Message.tool_calls))
            .order_by(Turn.started_at, Turn.id)
        )
        return list((await session.scalars(query)).all())


def _encode_cursor(created_at: datetime, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{conversation_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), conversation_id
    except (ValueError, binascii.Error) as exc:
        raise BadRequestError("The cursor is not one this API returned; start again without it.") from exc
