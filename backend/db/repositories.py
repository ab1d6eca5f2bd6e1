"""ConversationStore: every read and write of conversations, turns, messages and tool calls.

Each method is one short transaction (a function of a `Connection`, run by `backend.db.database`), so concurrent
turns and SQLite's single writer never wait on a model call or a tool call. A chat turn makes four writes: its start
(the user message, and the choice of its context), the assistant message asking for tools, each tool result, and
its end (the answer with the turn's status). The chat path writes plain records (`backend.db.records`) with Core
statements built once (`backend.db.prepared`); reads for the API return detached model instances.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, filterfalse
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, FromClause, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from backend.cursors import decode_cursor, encode_cursor
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
from backend.errors import NotFoundError

# A turn's context is picked from no more than this many of the conversation's newest finished turns, however
# long the conversation: the cost of a turn does not grow with its history.
CONTEXT_TURN_WINDOW = 256
KNOWN_CONVERSATIONS = 1_000  # whose finished turns the store keeps in memory (a few KB each)
CANCELLED_TOOL_CALL_TEXT = "The tool call was cancelled."
INTERRUPTED_TOOL_CALL_TEXT = "The tool call was interrupted: MCP Chat stopped before it finished."

# The chat path's statements, built once: building a statement object per call cost more than running it.
_INSERT = {table: Prepared(insert(table)) for table in Base.metadata.sorted_tables}
# Each table's column keys, and a getter of a row's values for them.
_COLUMNS: dict[FromClause, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    table: (keys := tuple(table.columns.keys()), attrgetter(*keys)) for table in Base.metadata.sorted_tables
}
_ID, _TOKENS = itemgetter(1), itemgetter(2)
_TOUCH_CONVERSATION = Prepared(
    update(Conversation).where(Conversation.id == bindparam("b_id")).returning(Conversation.version)
)
_CONVERSATION_VERSION = Prepared(select(Conversation.version).where(Conversation.id == bindparam("b_id")))
# UPDATEs take their SET columns from the parameters they run with.
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
    .where(Conversation.user_id == bindparam("b_user_id"))
    .where(Conversation.kind == ConversationKind.LEGACY.value)
    .order_by(Conversation.created_at.desc(), Conversation.id.desc())
    .limit(1)
)
# FOR KEY SHARE (rendered on PostgreSQL only; on SQLite the writer holds the whole database): the conversation
# cannot be deleted before the turn's transaction ends, and concurrent turns do not wait for each other.
_NEWEST_LEGACY_ID = Prepared(
    _NEWEST_LEGACY.with_only_columns(Conversation.id).with_for_update(read=True, key_share=True)
)
_CONVERSATION_ID = Prepared(
    select(Conversation.id)
    .where(Conversation.id == bindparam("b_id"), Conversation.user_id == bindparam("b_user_id"))
    .with_for_update(read=True, key_share=True)
)
# The newest finished turns, read in the transaction that starts a turn (what had finished when it began) unless
# the store remembers them (`_FinishedTurns`). ix_turns_context covers it, so SQLite reads the index alone.
_NEWEST_FINISHED = Prepared(
    select(Turn.started_at, Turn.id, Turn.tokens)
    .where(Turn.conversation_id == bindparam("b_conversation_id"))
    .where(Turn.status != TurnStatus.RUNNING.value)
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
    """A finished turn's messages as the model is shown them again."""

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
class StartedTurn:
    """A new turn, its stored user message, and its context: the turns that had finished when it began."""

    turn: TurnRecord
    user_message: MessageRecord
    context_ids: list[str]  # the newest finished turns that fit the token budget, oldest first
    context_rows: dict[str, ContextTurn]  # the rows of those the caller did not know


# (started_at as naive UTC, id, tokens) of a conversation's newest finished turns, oldest first.
FinishedTurn = tuple[datetime, str, int]


class _FinishedTurns:
    """The newest finished turns of recently used conversations, as this process last saw them, with the
    conversation's version then.

    The database bumps a conversation's version whenever one of its finished turns is written
    (`backend.db.triggers`), and a finished turn never changes. So while the version is the one remembered, the
    remembered turns are the conversation's finished turns, whichever process wrote them: a turn's start picks
    its context from them instead of reading up to CONTEXT_TURN_WINDOW rows again (sqlite3 builds each row in
    Python, the largest cost of a turn's start). Any other version means they are read again."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[int, list[FinishedTurn]]] = OrderedDict()  # least recent first

    def at(self, conversation_id: str, version: int) -> list[FinishedTurn] | None:
        """The conversation's finished turns if they were seen at `version`."""
        seen = self._seen.get(conversation_id)
        return seen[1] if seen is not None and seen[0] == version else None

    def remember(self, conversation_id: str, version: int, turns: list[FinishedTurn]) -> None:
        self._seen[conversation_id] = (version, turns)
        self._seen.move_to_end(conversation_id)
        if len(self._seen) > KNOWN_CONVERSATIONS:
            self._seen.popitem(last=False)

    def add(self, conversation_id: str, version: int, turn: FinishedTurn) -> None:
        """A turn this process finished, which made the conversation's version `version`: kept only if the
        remembered turns were exactly those before it."""
        seen = self._seen.get(conversation_id)
        if seen is None or seen[0] != version - 1:
            self._seen.pop(conversation_id, None)
            return
        turns = seen[1].copy()  # a new list: a context being picked from the old one keeps it whole
        insort(turns, turn)
        self.remember(conversation_id, version, turns[-CONTEXT_TURN_WINDOW:])

    def forget(self, conversation_id: str) -> None:
        self._seen.pop(conversation_id, None)


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._finished = _FinishedTurns()

    # -- conversations ---------------------------------------------------------------------------

    async def create(
        self, user_id: str, title: str | None = None, kind: ConversationKind = ConversationKind.CHAT
    ) -> Conversation:
        now = utcnow()
        conversation = Conversation(
            id=new_id(), user_id=user_id, title=title, kind=kind.value, created_at=now, updated_at=now, version=0
        )
        await self.database.write(lambda connection: _insert(connection, conversation))
        return conversation

    async def get(self, user_id: str, conversation_id: str) -> Conversation:
        """One of the user's conversations.

        Raises:
            ConversationNotFoundError: the user has no such conversation (another user's is not theirs).
        """

        def read(connection: Connection) -> Conversation:
            with Session(connection) as session:
                return _get(session, user_id, conversation_id)

        return await self.database.read(read)

    async def page(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Conversation], str | None]:
        """The user's conversations, newest first, keyset-paginated on (created_at, id).

        Raises:
            BadRequestError: the cursor was not one this API issued.
        """
        query = (
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        )
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor, datetime, str)
            query = query.where(tuple_(Conversation.created_at, Conversation.id) < (created_at, last_id))

        def read(connection: Connection) -> list[Conversation]:
            with Session(connection) as session:
                return list(session.scalars(query.limit(limit + 1)).all())

        rows = await self.database.read(read)
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)

    async def rename(self, user_id: str, conversation_id: str, title: str | None) -> Conversation:
        """Raises:
        ConversationNotFoundError: the user has no such conversation."""

        def write(connection: Connection) -> Conversation:
            with Session(connection) as session:
                conversation = _get(session, user_id, conversation_id)
                conversation.title = title
                conversation.updated_at = utcnow()
                session.flush()
                return conversation

        return await self.database.write(write)

    async def delete(self, user_id: str, conversation_id: str) -> None:
        """Delete one of the user's conversations and everything in it.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """

        def write(connection: Connection) -> None:
            found = connection.execute(
                delete(Conversation).where(Conversation.id == conversation_id, Conversation.user_id == user_id)
            )
            if not found.rowcount:
                raise _not_found(conversation_id)
            # Children too: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON, PostgreSQL always.
            for model in (ToolCall, Message, Turn):
                connection.execute(delete(model).where(model.conversation_id == conversation_id))

        await self.database.write(write, is_long=True)
        self._finished.forget(conversation_id)

    async def legacy(self, user_id: str) -> Conversation:
        """The user's conversation behind /api/chat: their newest legacy one, created on first use."""
        found = await self.database.read(lambda connection: _newest_legacy(connection, user_id))
        if found is not None:
            return found
        return await self.database.write(lambda connection: _create_legacy(connection, user_id))

    async def new_legacy(self, user_id: str) -> Conversation:
        """Start a fresh legacy conversation for the user (/api/clear); the old ones stay stored."""
        return await self.database.write(lambda connection: _create_legacy(connection, user_id))

    # -- messages ----------------------------------------------------------------------------------

    async def messages_page(
        self, user_id: str, conversation_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Message], str | None]:
        """The conversation's messages, newest first (each assistant message with its tool calls), keyset-paginated
        on (its turn's start, its turn, its place in the turn).

        Raises:
            ConversationNotFoundError: the user has no such conversation.
            BadRequestError: the cursor was not one this API issued.
        """
        position = tuple_(Turn.started_at, Turn.id, Message.seq)
        query = (
            select(Message)
            .join(Turn, Turn.id == Message.turn_id)
            .where(Message.conversation_id == conversation_id)
            .options(selectinload(Message.tool_calls))
            .order_by(Turn.started_at.desc(), Turn.id.desc(), Message.seq.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            query = query.where(position < decode_cursor(cursor, datetime, str, int))

        def read(connection: Connection) -> list[tuple[Message, datetime]]:
            with Session(connection) as session:
                _get(session, user_id, conversation_id)
                rows = session.execute(query.add_columns(Turn.started_at)).all()
                return [(message, started_at) for message, started_at in rows]

        rows = await self.database.read(read)
        if len(rows) <= limit:
            return [message for message, _ in rows], None
        last, started_at = rows[limit - 1]
        return [message for message, _ in rows[:limit]], encode_cursor(started_at, last.turn_id, last.seq)

    async def history(self, user_id: str, conversation_id: str) -> list[Turn]:
        """Every turn of one of the user's conversations, finished or not, oldest first, with their messages and
        tool calls.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """

        def read(connection: Connection) -> list[Turn]:
            with Session(connection) as session:
                _get(session, user_id, conversation_id)
                query = (
                    select(Turn)
                    .where(Turn.conversation_id == conversation_id)
                    .options(selectinload(Turn.messages).selectinload(Message.tool_calls))
                    .order_by(Turn.started_at, Turn.id)
                )
                return list(session.scalars(query).all())

        return await self.database.read(read)

    # -- turns -----------------------------------------------------------------------------------

    async def start_turn(
        self, user_id: str, conversation_id: str | None, content: str, max_tokens: int, known: Container[str] = ()
    ) -> StartedTurn:
        """Store the user's message (before any model call) in a new running turn, and pick its context in the same
        transaction: the newest turns that had finished (been committed) by then and fit `max_tokens`. Rows are
        read only for context turns not in `known` (the caller's cache: finished turns never change, and the
        database decides which turns count, so the cache is never stale whichever process wrote them).

        `conversation_id` None: the user's legacy conversation (see `legacy`), found or created in that transaction.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """

        def write(connection: Connection) -> tuple[StartedTurn, int, list[FinishedTurn]]:
            target = conversation_id
            if target is None:
                newest = _NEWEST_LEGACY_ID.rows(connection, {"b_user_id": user_id})
                target = newest[0][0] if newest else _create_legacy(connection, user_id).id
            elif not _CONVERSATION_ID.rows(connection, {"b_id": target, "b_user_id": user_id}):
                raise _not_found(target)
            now = utcnow()
            turn = TurnRecord(
                id=new_id(), conversation_id=target, status=TurnStatus.RUNNING.value, tokens=0, started_at=now
            )
            message = MessageRecord(
                id=new_id(),
                conversation_id=target,
                turn_id=turn.id,
                seq=0,
                role="user",
                content=content,
                status="completed",
                created_at=now,
            )
            _insert(connection, turn, message)
            # Only now: this UPDATE locks the conversation's row until COMMIT, and every turn of the conversation
            # waits for that lock, so it is held for the statements below only. It also keeps the version it
            # returns and the finished turns read below consistent (a turn's end bumps the version under it).
            version = int(_TOUCH_CONVERSATION.rows(connection, {"b_id": target, "updated_at": now})[0][0])
            finished = self._finished.at(target, version)
            if finished is None:
                finished = _read_finished_turns(connection, target)
            context_ids = _fitting(finished, max_tokens)
            missing = list(filterfalse(known.__contains__, context_ids))
            rows = _read_context_turns(connection, missing) if missing else {}
            return StartedTurn(turn, message, context_ids, rows), version, finished

        started, version, finished = await self.database.write(write)
        self._finished.remember(started.turn.conversation_id, version, finished)
        return started

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
        await self.database.write(lambda connection: _insert(connection, message, *message.tool_calls))
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
        await self.database.write(lambda connection: _UPDATE_TOOL_CALL.run(connection, {"b_id": call.id, **values}))
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
        """End the turn, storing its last assistant message (`answer`) in the same transaction; nothing happens
        when the turn was deleted with its conversation meanwhile.

        Tool calls still running are cancelled, in the database and in `tool_calls` (the caller's copies)."""
        finished_at = utcnow()
        # A completed turn's tool calls have all finished (the loop waits for them); any other end may leave some.
        is_any_running = status is not TurnStatus.COMPLETED or any(
            call.status == ToolCallStatus.RUNNING.value for call in tool_calls
        )

        def write(connection: Connection) -> int | None:
            values = {"b_id": turn.id, "status": status.value, "tokens": tokens, "finished_at": finished_at}
            if not _UPDATE_TURN.run(connection, values):
                return None
            if answer is not None:
                _insert(connection, answer)
            if is_any_running:
                connection.execute(_CANCEL_RUNNING_TOOL_CALLS, {"b_turn_id": turn.id})
            return int(_CONVERSATION_VERSION.rows(connection, {"b_id": turn.conversation_id})[0][0])

        version = await self.database.write(write)  # None: deleted with its conversation meanwhile
        if version is None:
            self._finished.forget(turn.conversation_id)
        else:
            self._finished.add(turn.conversation_id, version, (_naive_utc(turn.started_at), turn.id, tokens))
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
            turns = connection.execute(
                update(Turn)
                .where(Turn.status == TurnStatus.RUNNING.value)
                .values(status=TurnStatus.INTERRUPTED.value, finished_at=utcnow())
            )
            connection.execute(
                update(ToolCall)
                .where(ToolCall.status == ToolCallStatus.RUNNING.value)
                .values(status=ToolCallStatus.INTERRUPTED.value, is_error=True, result_text=INTERRUPTED_TOOL_CALL_TEXT)
            )
            return int(turns.rowcount or 0)

        return await self.database.write(write, is_long=True)

    async def context_turns(self, turn_ids: list[str]) -> dict[str, ContextTurn]:
        """The rows of these (finished) turns, as `start_turn` reads them for the turns its caller did not know."""
        return await self.database.read(lambda connection: _read_context_turns(connection, turn_ids))


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


def _newest_legacy(connection: Connection, user_id: str) -> Conversation | None:
    row = connection.execute(_NEWEST_LEGACY, {"b_user_id": user_id}).first()
    return Conversation(**row._asdict()) if row is not None else None


def _create_legacy(connection: Connection, user_id: str) -> Conversation:
    now = utcnow()
    conversation = Conversation(
        id=new_id(),
        user_id=user_id,
        title="Legacy chat",
        kind=ConversationKind.LEGACY.value,
        created_at=now,
        updated_at=now,
        version=0,
    )
    _insert(connection, conversation)
    return conversation


def _fitting(finished: list[FinishedTurn], max_tokens: int) -> list[str]:
    """The ids of the newest finished turns (given oldest first) whose tokens together fit `max_tokens`, oldest
    first; C-level loops, as a long conversation has hundreds of turns on every turn's start."""
    fitting = bisect_right(list(accumulate(map(_TOKENS, reversed(finished)))), max_tokens)
    return list(map(_ID, finished[len(finished) - fitting :])) if fitting else []


def _read_finished_turns(connection: Connection, conversation_id: str) -> list[FinishedTurn]:
    rows = _NEWEST_FINISHED.rows(connection, {"b_conversation_id": conversation_id})
    return [(_naive_utc(started_at), turn_id, tokens) for started_at, turn_id, tokens in reversed(rows)]


def _naive_utc(value: datetime | str) -> datetime:
    """A stored time as a naive UTC datetime, comparable whichever driver read it: SQLite's returns the text
    SQLAlchemy stored (UTC, no offset), PostgreSQL's an aware datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _not_found(conversation_id: str) -> ConversationNotFoundError:
    return ConversationNotFoundError(f"No conversation has the id {conversation_id!r}.")


def _get(session: Session, user_id: str, conversation_id: str) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != user_id:
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
