"""ConversationStore: every read and write of conversations, turns, messages and tool calls.

Each method is one short transaction (a function of a `Connection`, run by `backend.db.database`), so
concurrent turns and SQLite's single writer never wait on a model call or a tool call. The chat path writes
with Core statements, not the ORM's unit of work: a turn makes four writes (the first also picks its context,
the last bumps the conversation's version), and the ORM's bookkeeping cost more than SQLite itself. Its rows
are plain records (`backend.db.records`); reads for the API return (detached) model instances.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, filterfalse
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, FromClause, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from backend.db.database import Database
from backend.db.models import (
    Base,
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
from backend.db.prepared import Prepared
from backend.db.records import MessageRecord, Record, ToolCallRecord, TurnRecord
from backend.errors import BadRequestError, NotFoundError

# Context building looks at no more than this many of the newest finished turns, however long the
# conversation: the cost of a turn does not grow with the history.
CONTEXT_TURN_WINDOW = 256
CANCELLED_TOOL_CALL_TEXT = "The tool call was cancelled."
KNOWN_CONVERSATIONS = 1_000  # whose finished turns the store keeps (a few KB each)

# The chat path's statements, built once and prepared (`backend.db.prepared`): building a new statement object
# per call cost five times what running it did (an UPDATE: 47 us built per call, 9 us prebuilt, timed alone), and
# on SQLite SQLAlchemy's execution machinery as much again. UPDATEs take their SET columns from the parameters
# they are executed with.
_INSERT = {table: Prepared(insert(table)) for table in Base.metadata.sorted_tables}
# Each table's column keys, and a getter of a row's values for them (one C call, not one getattr a column).
_COLUMNS: dict[FromClause, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    table: (keys := tuple(table.columns.keys()), attrgetter(*keys)) for table in Base.metadata.sorted_tables
}
# A turn's start touches its conversation and bumps its version, as does its end (see `_FinishedTurns`).
_TOUCH_CONVERSATION = Prepared(
    update(Conversation).where(Conversation.id == bindparam("b_id")).values(version=Conversation.version + 1)
)
_CONVERSATION_VERSION = Prepared(select(Conversation.version).where(Conversation.id == bindparam("b_id")))
_UPDATE_TURN = Prepared(update(Turn).where(Turn.id == bindparam("b_id")))
_UPDATE_TOOL_CALL = Prepared(update(ToolCall).where(ToolCall.id == bindparam("b_id")))
_CANCEL_RUNNING_TOOL_CALLS = (
    update(ToolCall)
    .where(ToolCall.status == ToolCallStatus.RUNNING.value)
    .where(ToolCall.message_id.in_(select(Message.id).where(Message.turn_id == bindparam("b_turn_id"))))
    .values(status=ToolCallStatus.CANCELLED.value, is_error=True, result_text=CANCELLED_TOOL_CALL_TEXT)
)
_NEWEST_LEGACY = (
    select(*Conversation.__table__.columns)
    .where(Conversation.kind == ConversationKind.LEGACY.value)
    .order_by(Conversation.created_at.desc(), Conversation.id.desc())
    .limit(1)
)
_NEWEST_LEGACY_ID = Prepared(_NEWEST_LEGACY.with_only_columns(Conversation.id))
# The newest finished turns, read in the transaction that starts a turn: what had finished when it began.
# ix_turns_context covers it, so SQLite reads the index alone.
_FINISHED_TURNS = Prepared(
    select(Turn.started_at, Turn.id, Turn.tokens)
    .where(Turn.conversation_id == bindparam("b_conversation_id"))
    .where(Turn.status != TurnStatus.RUNNING.value)
    .order_by(Turn.started_at.desc(), Turn.id.desc())
    .limit(CONTEXT_TURN_WINDOW)
)
# The same, read later (`context_turns`): finished before the turn began, by the clock.
_CONTEXT_BUDGET = Prepared(
    select(Turn.id, Turn.tokens)
    .where(Turn.conversation_id == bindparam("b_conversation_id"))
    .where(Turn.status != TurnStatus.RUNNING.value)
    .where(Turn.finished_at <= bindparam("b_started_at"))
    .order_by(Turn.started_at.desc(), Turn.id.desc())
    .limit(CONTEXT_TURN_WINDOW)
)
_CONTEXT_MESSAGES = (
    select(Message.id, Message.turn_id, Message.role, Message.content)
    .where(Message.turn_id.in_(bindparam("b_turn_ids", expanding=True)))
    .order_by(Message.turn_id, Message.seq)
)
_CONTEXT_TOOL_CALLS = (
    select(
        ToolCall.message_id,
        ToolCall.call_id,
        ToolCall.name,
        ToolCall.arguments_json,
        ToolCall.result_text,
        ToolCall.status,
    )
    .join(Message, Message.id == ToolCall.message_id)
    .where(Message.turn_id.in_(bindparam("b_turn_ids", expanding=True)))
    .order_by(ToolCall.message_id, ToolCall.seq)
)


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


def context_turn(messages: Sequence[Message | MessageRecord]) -> ContextTurn:
    """Stored messages (tool calls loaded) as the context rows `context_turns` would read back for them."""
    return ContextTurn(
        messages=[
            ContextMessage(
                message.role,
                message.content,
                [
                    ContextToolCall(call.call_id, call.name, call.arguments_json, call.result_text, call.status)
                    for call in message.tool_calls
                ],
            )
            for message in messages
        ]
    )


@dataclass(frozen=True)
class ContextWindow:
    turn_ids: list[str]  # the turns that fit, oldest first
    turns: dict[str, ContextTurn]  # the rows of those the caller did not know


@dataclass(frozen=True)
class _FinishedTurns:
    """A conversation's newest finished turns as this process last saw them, and its version then.

    Finished turns never change, and every start and end of a turn bumps the conversation's version in its own
    transaction. So when a transaction bumps the version from exactly `version`, nobody else (no other process,
    no other turn) started or finished a turn in between, and these are still the conversation's finished turns:
    a turn's start picks its context from them instead of reading up to CONTEXT_TURN_WINDOW turns again (the
    read and its rows were 4% of a turn's CPU). Any other value means the turns are read again."""

    version: int
    turns: list[tuple[datetime, str, int]]  # (started_at as naive UTC, id, tokens), oldest first


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._finished: OrderedDict[str, _FinishedTurns] = OrderedDict()  # by conversation, least recent first

    def _saw(self, conversation_id: str, version: int, finished: _FinishedTurns | None) -> None:
        """Remember a conversation's finished turns at `version` (None: forget them, `version` was not ours)."""
        seen = self._finished.get(conversation_id)
        if finished is None and seen is not None and seen.version == version - 1:
            finished = _FinishedTurns(version, seen.turns)  # a turn started: the finished ones are the same
        if finished is None:
            self._finished.pop(conversation_id, None)
            return
        self._finished[conversation_id] = finished
        self._finished.move_to_end(conversation_id)
        if len(self._finished) > KNOWN_CONVERSATIONS:
            self._finished.popitem(last=False)

    # -- conversations ---------------------------------------------------------------------------

    async def create(self, title: str | None = None, kind: ConversationKind = ConversationKind.CHAT) -> Conversation:
        now = utcnow()
        conversation = Conversation(
            id=new_id(), title=title, kind=kind.value, created_at=now, updated_at=now, version=0
        )
        await self.database.write_statements(lambda connection: _insert(connection, conversation))
        return conversation

    async def get(self, conversation_id: str) -> Conversation:
        def read(connection: Connection) -> Conversation:
            with Session(connection) as session:
                return _get(session, conversation_id)

        return await self.database.read(read)

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

        def read(connection: Connection) -> list[Conversation]:
            with Session(connection) as session:
                return list(session.scalars(query.limit(limit + 1)).all())

        rows = await self.database.read(read)
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], _encode_cursor(last.created_at, last.id)

    async def rename(self, conversation_id: str, title: str | None) -> Conversation:
        def write(connection: Connection) -> Conversation:
            with Session(connection) as session:
                conversation = _get(session, conversation_id)
                conversation.title = title
                conversation.updated_at = utcnow()
                session.flush()
                return conversation

        return await self.database.write(write)

    async def delete(self, conversation_id: str) -> None:
        def write(connection: Connection) -> None:
            found = connection.execute(delete(Conversation).where(Conversation.id == conversation_id))
            if not found.rowcount:
                raise _not_found(conversation_id)
            # Children too: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON, PostgreSQL always.
            for model in (ToolCall, Message, Turn):
                connection.execute(delete(model).where(model.conversation_id == conversation_id))

        await self.database.write(write)
        self._finished.pop(conversation_id, None)

    async def legacy(self) -> Conversation:
        """The conversation behind /api/chat: the newest legacy one, created on first use."""
        found = await self.database.read(_newest_legacy)
        return found if found is not None else await self.database.write(_create_legacy)

    async def new_legacy(self) -> Conversation:
        """Start a fresh legacy conversation (/api/clear); the old ones stay stored."""
        return await self.database.write(_create_legacy)

    # -- turns -----------------------------------------------------------------------------------

    async def start_turn(self, conversation_id: str, content: str) -> tuple[TurnRecord, MessageRecord]:
        """Store the user's message (before any model call) in a new running turn."""
        turn, message = _new_turn(conversation_id, content)
        version = await self.database.write_statements(lambda connection: _insert_turn(connection, turn, message))
        self._saw(conversation_id, version, None)
        return turn, message

    async def start_turn_with_context(
        self, conversation_id: str | None, content: str, max_tokens: int, known: Container[str] = ()
    ) -> tuple[TurnRecord, MessageRecord, ContextWindow]:
        """`start_turn` and `context_turns` in one transaction: the context is exactly what had finished (been
        committed) when it ran, picked from the store's memory of the conversation's finished turns while the
        conversation's version vouches for it (`_FinishedTurns`), read otherwise.

        `conversation_id` None: the legacy conversation (see `legacy`), found or created in that transaction."""

        def write(connection: Connection) -> tuple[TurnRecord, MessageRecord, ContextWindow, _FinishedTurns]:
            target = conversation_id
            if target is None:
                newest = _NEWEST_LEGACY_ID.rows(connection, {})
                target = newest[0][0] if newest else _create_legacy(connection).id
            turn, message = _new_turn(target, content)
            version = _insert_turn(connection, turn, message)
            seen = self._finished.get(target)
            if seen is None or seen.version != version - 1:
                seen = _FinishedTurns(version, _read_finished_turns(connection, target))
            else:
                seen = _FinishedTurns(version, seen.turns)
            picked = _pick_context(seen.turns, max_tokens, known)
            read = _read_context_turns(connection, picked.missing) if picked.missing else {}
            return turn, message, ContextWindow(picked.turn_ids, read), seen

        turn, message, window, seen = await self.database.write_statements(write)
        self._saw(turn.conversation_id, seen.version, seen)
        return turn, message, window

    async def add_assistant_message(
        self,
        turn: TurnRecord,
        message_id: str,
        seq: int,
        content: str,
        tool_calls: Sequence[NewToolCall] = (),
    ) -> MessageRecord:
        """Store an assistant message and the tool calls it asks for (running, until each is finished)."""
        message = assistant_message(turn, message_id, seq, content)
        message.tool_calls = [
            ToolCallRecord(
                id=call.id,
                message_id=message_id,
                conversation_id=turn.conversation_id,
                seq=index,
                call_id=call.call_id,
                name=call.name,
                server=call.server,
                arguments_json=call.arguments_json,
                status=ToolCallStatus.RUNNING.value,
                created_at=message.created_at,
            )
            for index, call in enumerate(tool_calls)
        ]
        await self.database.write_statements(lambda connection: _insert(connection, message, *message.tool_calls))
        return message

    async def finish_tool_call(self, call: ToolCallRecord, outcome: ToolCallOutcome) -> None:
        """Store a tool call's result; `call` (as `add_assistant_message` returned it) is updated to match."""
        values = {
            "result": outcome.result,
            "result_text": outcome.result_text,
            "is_error": outcome.is_error,
            "status": outcome.status.value,
            "duration_ms": outcome.duration_ms,
        }
        await self.database.write_statements(
            lambda connection: _UPDATE_TOOL_CALL.run(connection, {"b_id": call.id, **values})
        )
        for name, value in values.items():
            setattr(call, name, value)

    async def finish_turn(
        self,
        turn: TurnRecord,
        status: TurnStatus,
        tokens: int,
        answer: MessageRecord | None = None,
        tool_calls: Sequence[ToolCallRecord] = (),
    ) -> None:
        """End the turn, storing its last assistant message (`answer`) in the same transaction.

        Tool calls still running are cancelled, in the database and in `tool_calls` (the caller's copies)."""
        finished_at = utcnow()

        # A completed turn's tool calls have all finished (the loop waits for them); any other end may leave some.
        is_any_running = status is not TurnStatus.COMPLETED or any(
            call.status == ToolCallStatus.RUNNING.value for call in tool_calls
        )

        def write(connection: Connection) -> int | None:
            if answer is not None:
                _insert(connection, answer)
            values = {"b_id": turn.id, "status": status.value, "tokens": tokens, "finished_at": finished_at}
            _UPDATE_TURN.run(connection, values)
            if is_any_running:
                connection.execute(_CANCEL_RUNNING_TOOL_CALLS, {"b_turn_id": turn.id})
            return _bump_version(connection, turn.conversation_id)

        version = await self.database.write_statements(write)  # None: the conversation was deleted meanwhile
        seen = self._finished.get(turn.conversation_id)
        if version is None:
            self._finished.pop(turn.conversation_id, None)
        elif seen is not None and seen.version == version - 1:
            turns = seen.turns.copy()  # a new list: a context being picked from the old one keeps it whole
            insort(turns, (_naive_utc(turn.started_at), turn.id, tokens))
            del turns[:-CONTEXT_TURN_WINDOW]
            self._saw(turn.conversation_id, version, _FinishedTurns(version, turns))
        else:
            self._saw(turn.conversation_id, version, None)
        turn.status, turn.tokens, turn.finished_at = status.value, tokens, finished_at
        for call in tool_calls:
            if call.status == ToolCallStatus.RUNNING.value:
                call.status, call.is_error, call.result_text = (
                    ToolCallStatus.CANCELLED.value,
                    True,
                    CANCELLED_TOOL_CALL_TEXT,
                )

    async def mark_interrupted(self) -> int:
        """At start-up: turns and tool calls a stopped process left running. Their stored messages stay."""

        def write(connection: Connection) -> int:
            running = select(Turn.conversation_id).where(Turn.status == TurnStatus.RUNNING.value)
            connection.execute(
                update(Conversation).where(Conversation.id.in_(running)).values(version=Conversation.version + 1)
            )
            turns = connection.execute(
                update(Turn)
                .where(Turn.status == TurnStatus.RUNNING.value)
                .values(status=TurnStatus.INTERRUPTED.value, finished_at=utcnow())
            )
            connection.execute(
                update(ToolCall)
                .where(ToolCall.status == ToolCallStatus.RUNNING.value)
                .values(
                    status=ToolCallStatus.INTERRUPTED.value,
                    is_error=True,
                    result_text="The tool call was interrupted: MCP Chat stopped before it finished.",
                )
            )
            return int(turns.rowcount or 0)

        return await self.database.write(write)

    # -- reading history -------------------------------------------------------------------------

    async def context_turns(self, turn: TurnRecord, max_tokens: int, known: Container[str] = ()) -> ContextWindow:
        """The newest turns that had finished when `turn` began and fit in `max_tokens`, oldest first.

        One indexed query picks the turns (ids and token counts only); the messages are read, as plain rows,
        only for turns not in `known` (the caller's cache: finished turns never change, and the database
        decides which turns count, so a cache is never stale whichever process wrote them). `known` is only
        asked `in`; on SQLite this read runs on a worker thread."""
        return await self.database.read(lambda connection: _context_window(connection, turn, max_tokens, known))

    async def history(self, conversation_id: str) -> tuple[Conversation, list[Turn]]:
        """The whole stored conversation: every turn, finished or not, oldest first."""

        def read(connection: Connection) -> tuple[Conversation, list[Turn]]:
            with Session(connection) as session:
                conversation = _get(session, conversation_id)
                return conversation, _turns_with_messages(session, Turn.conversation_id == conversation_id)

        return await self.database.read(read)


def assistant_message(
    turn: TurnRecord, message_id: str, seq: int, content: str, status: str = "completed"
) -> MessageRecord:
    """An assistant message of `turn`, not stored yet (see `finish_turn`)."""
    return MessageRecord(
        id=message_id,
        conversation_id=turn.conversation_id,
        turn_id=turn.id,
        seq=seq,
        role="assistant",
        content=content,
        status=status,
        created_at=utcnow(),
    )


def _newest_legacy(connection: Connection) -> Conversation | None:
    row = connection.execute(_NEWEST_LEGACY).first()
    return Conversation(**row._asdict()) if row is not None else None


def _create_legacy(connection: Connection) -> Conversation:
    now = utcnow()
    conversation = Conversation(
        id=new_id(), title="Legacy chat", kind=ConversationKind.LEGACY.value, created_at=now, updated_at=now, version=0
    )
    _insert(connection, conversation)
    return conversation


def _new_turn(conversation_id: str, content: str) -> tuple[TurnRecord, MessageRecord]:
    now = utcnow()
    turn = TurnRecord(
        id=new_id(), conversation_id=conversation_id, status=TurnStatus.RUNNING.value, tokens=0, started_at=now
    )
    message = MessageRecord(
        id=new_id(),
        conversation_id=conversation_id,
        turn_id=turn.id,
        seq=0,
        role="user",
        content=content,
        status="completed",
        created_at=now,
    )
    return turn, message


def _insert_turn(connection: Connection, turn: TurnRecord, message: MessageRecord) -> int:
    """Insert a new turn and its user message; the conversation's version after it."""
    version = _bump_version(connection, turn.conversation_id, {"updated_at": turn.started_at})
    if version is None:
        raise _not_found(turn.conversation_id)
    _insert(connection, turn, message)
    return version


def _context_window(connection: Connection, turn: TurnRecord, max_tokens: int, known: Container[str]) -> ContextWindow:
    rows = _CONTEXT_BUDGET.rows(
        connection, {"b_conversation_id": turn.conversation_id, "b_started_at": turn.started_at}
    )
    picked = _pick_context([(None, turn_id, tokens) for turn_id, tokens in reversed(rows)], max_tokens, known)
    return ContextWindow(picked.turn_ids, _read_context_turns(connection, picked.missing) if picked.missing else {})


@dataclass(frozen=True)
class _Picked:
    turn_ids: list[str]  # oldest first
    missing: list[str]  # those not in `known`


def _pick_context(turns: Sequence[tuple[Any, str, int]], max_tokens: int, known: Container[str]) -> _Picked:
    """Newest first while they fit: the turns (oldest first, as (started_at, id, tokens)) whose running total of
    tokens, counted from the newest, stays within `max_tokens`."""
    fitting = bisect_right(list(accumulate(map(_TOKENS, reversed(turns)))), max_tokens)
    chosen = list(map(_ID, turns[len(turns) - fitting :])) if fitting else []
    return _Picked(chosen, list(filterfalse(known.__contains__, chosen)))


_ID, _TOKENS = itemgetter(1), itemgetter(2)


def _read_finished_turns(connection: Connection, conversation_id: str) -> list[tuple[datetime, str, int]]:
    rows = _FINISHED_TURNS.rows(connection, {"b_conversation_id": conversation_id})
    return [(_naive_utc(started_at), turn_id, tokens) for started_at, turn_id, tokens in reversed(rows)]


def _naive_utc(value: datetime | str) -> datetime:
    """A stored time as a naive UTC datetime: SQLite's driver returns the text SQLAlchemy stored (UTC, no
    offset), other drivers an aware datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _bump_version(connection: Connection, conversation_id: str, values: dict[str, Any] | None = None) -> int | None:
    """Bump the conversation's version (and set `values`); the new version, None if there is no such conversation."""
    if not _TOUCH_CONVERSATION.run(connection, {"b_id": conversation_id, **(values or {})}):
        return None
    return int(_CONVERSATION_VERSION.rows(connection, {"b_id": conversation_id})[0][0])


def _not_found(conversation_id: str) -> ConversationNotFoundError:
    return ConversationNotFoundError(f"No conversation has the id {conversation_id!r}.")


def _get(session: Session, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


def _insert(connection: Connection, *rows: Base | Record) -> None:
    """INSERT model instances or records as Core statements, one per table in the order given (parents first)."""
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        table = row.__table__
        keys, values_of = _COLUMNS[table]
        by_table.setdefault(table, []).append(dict(zip(keys, values_of(row), strict=True)))
    for table, values in by_table.items():
        _INSERT[table].run_many(connection, values)


def _read_context_turns(connection: Connection, turn_ids: list[str]) -> dict[str, ContextTurn]:
    message_rows = connection.execute(_CONTEXT_MESSAGES, {"b_turn_ids": turn_ids})
    call_rows = connection.execute(_CONTEXT_TOOL_CALLS, {"b_turn_ids": turn_ids})
    calls: dict[str, list[ContextToolCall]] = {}
    for message_id, call_id, name, arguments_json, result_text, status in call_rows.all():
        calls.setdefault(message_id, []).append(ContextToolCall(call_id, name, arguments_json, result_text, status))
    turns = {turn_id: ContextTurn(messages=[]) for turn_id in turn_ids}
    for message_id, turn_id, role, content in message_rows.all():
        turns[turn_id].messages.append(ContextMessage(role, content, calls.get(message_id, [])))
    return turns


def _turns_with_messages(session: Session, condition: Any) -> list[Turn]:
    query = (
        select(Turn)
        .where(condition)
        .options(selectinload(Turn.messages).selectinload(Message.tool_calls))
        .order_by(Turn.started_at, Turn.id)
    )
    return list(session.scalars(query).all())


def _encode_cursor(created_at: datetime, conversation_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{conversation_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), conversation_id
    except (ValueError, binascii.Error) as exc:
        raise BadRequestError("The cursor is not one this API returned; start again without it.") from exc
