"""Migrations and the conversation store on SQLite and on PostgreSQL (the same code and migrations)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text

from backend.db.database import Database, open_database
from backend.db.migrate import HEAD_REVISION, alembic_config, current_revision, migrate, upgrade
from backend.db.models import OWNER_ID, Base, Conversation, TurnStatus, UserRole, new_id, utcnow
from backend.db.records import TurnRecord
from backend.db.repositories import ConversationNotFoundError, ConversationStore, NewToolCall, assistant_message
from backend.db.user_store import UserStore
from backend.errors import BadRequestError
from tests.support.services import empty_postgres

TABLES = {"users", "refresh_tokens", "api_keys", "audit_events", "conversations", "turns", "messages", "tool_calls"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'store.db'}"
    else:
        url = await empty_postgres()
    database = open_database(url)
    try:
        yield database
    finally:
        await database.aclose()


@pytest.fixture
async def store(database: Database) -> ConversationStore:
    await upgrade(database)
    return ConversationStore(database)


async def _schema_differences(database: Database) -> list[object]:
    """What the database's schema lacks or has beyond the models' (server defaults included)."""

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        return list(compare_metadata(context, Base.metadata))

    return await database.read(compare)


async def test_upgrade_builds_an_empty_database_at_the_newest_revision_and_reruns_as_a_no_op(
    database: Database,
) -> None:
    await upgrade(database)
    await upgrade(database)
    assert await current_revision(database) == HEAD_REVISION
    names = await database.read(lambda connection: set(inspect(connection).get_table_names()))
    assert names >= TABLES | {"alembic_version"}
    assert await _schema_differences(database) == []


async def test_migrations_leave_exactly_the_schema_the_models_describe(database: Database) -> None:
    await migrate(database, "head")
    assert await current_revision(database) == HEAD_REVISION
    assert await _schema_differences(database) == []


@pytest.mark.parametrize("revision", ["0002", "0003", "0004", "0005", "0006", "0007"])
async def test_upgrade_migrates_a_database_at_an_older_revision(database: Database, revision: str) -> None:
    await migrate(database, revision)
    await upgrade(database)
    assert await current_revision(database) == HEAD_REVISION
    assert await _schema_differences(database) == []


async def test_upgrading_to_accounts_gives_the_owner_every_conversation_and_keeps_everything_in_them(
    database: Database,
) -> None:
    await migrate(database, "0004")

    def before_accounts(connection: Connection) -> None:  # rows as the app wrote them before migration 0005
        at = utcnow()
        for conversation_id, kind in (("c-chat", "chat"), ("c-legacy", "legacy")):
            connection.execute(
                text(
                    "INSERT INTO conversations (id, title, kind, created_at, updated_at) VALUES (:c, 't', :k, :at, :at)"
                ),
                {"c": conversation_id, "k": kind, "at": at},
            )
            connection.execute(
                text(
                    "INSERT INTO turns (id, conversation_id, status, tokens, started_at) "
                    "VALUES (:t, :c, 'completed', 1, :at)"
                ),
                {"t": f"t-{conversation_id}", "c": conversation_id, "at": at},
            )
            connection.execute(
                text(
                    "INSERT INTO messages (id, conversation_id, turn_id, seq, role, content, status, created_at) "
                    "VALUES (:m, :c, :t, 0, 'user', 'kept', 'completed', :at)"
                ),
                {"m": f"m-{conversation_id}", "c": conversation_id, "t": f"t-{conversation_id}", "at": at},
            )

    await database.write(before_accounts)
    await upgrade(database)
    store = ConversationStore(database)
    owned, _ = await store.page(OWNER_ID, 10, None)
    assert sorted(conversation.id for conversation in owned) == ["c-chat", "c-legacy"]
    assert (await store.legacy(OWNER_ID)).id == "c-legacy"
    for conversation_id in ("c-chat", "c-legacy"):
        messages, _ = await store.messages_page(OWNER_ID, conversation_id, 10, None)
        assert [message.content for message in messages] == ["kept"]
    owner = await UserStore(database).get(OWNER_ID)
    assert (owner.role, owner.password_hash, owner.is_disabled) == ("admin", None, False)


def test_the_newest_revision_named_in_code_is_the_migrations_folders_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


def test_starting_on_an_empty_or_current_database_never_loads_alembic(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from backend.db.database import open_database\n"
        "from backend.db.migrate import upgrade\n"
        f"database = open_database('sqlite:///{tmp_path / 'app.db'}')\n"
        "asyncio.run(upgrade(database))\n"
        "asyncio.run(upgrade(database))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('alembic', 'mako')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


async def _start(store: ConversationStore, conversation_id: str | None, content: str) -> TurnRecord:
    return (await store.start_turn(OWNER_ID, conversation_id, content, max_tokens=1000)).turn


async def test_context_holds_only_turns_finished_before_the_turn_began(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID, "ctx")
    done = await _start(store, conversation.id, "first")
    await store.add_assistant_message(done, "00000000-0000-0000-0000-000000000001", 1, "first answer")
    await store.finish_turn(done, TurnStatus.COMPLETED, tokens=10)
    running = await _start(store, conversation.id, "still running")
    current = await store.start_turn(OWNER_ID, conversation.id, "current", max_tokens=1000)
    assert current.context_ids == [done.id]
    assert [m.content for m in current.context_rows[done.id].messages] == ["first", "first answer"]
    await store.finish_turn(running, TurnStatus.COMPLETED, tokens=10)  # finished after `current` began
    following = await store.start_turn(OWNER_ID, conversation.id, "following", max_tokens=1000)
    assert following.context_ids == [done.id, running.id]  # `current` is still running
    assert (await store.start_turn(OWNER_ID, conversation.id, "small", max_tokens=15)).context_ids == [running.id]


async def test_context_reads_rows_only_of_turns_the_caller_does_not_know(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    finished = []
    for number in range(3):
        turn = await _start(store, conversation.id, f"question {number}")
        await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=10)
        finished.append(turn.id)
    current = await store.start_turn(
        OWNER_ID, conversation.id, "now", max_tokens=1000, known={finished[0], finished[2]}
    )
    assert current.context_ids == finished  # oldest first, the known ones included
    assert list(current.context_rows) == [finished[1]]
    assert [m.content for m in current.context_rows[finished[1]].messages] == ["question 1"]
    rows = await store.context_turns(finished)
    assert [[m.content for m in rows[turn_id].messages] for turn_id in finished] == [
        ["question 0"],
        ["question 1"],
        ["question 2"],
    ]


async def test_a_turns_context_holds_what_other_processes_finished_in_the_conversation(
    database: Database, store: ConversationStore
) -> None:
    other = ConversationStore(database)  # another process's store, the same database
    conversation = await store.create(OWNER_ID)
    finished: list[str] = []
    for number, writer in enumerate([store, store, other, store, other, other, store]):
        started = await writer.start_turn(OWNER_ID, conversation.id, f"q{number}", max_tokens=1000)
        assert started.context_ids == finished  # every finished turn, whichever store wrote it
        await writer.finish_turn(started.turn, TurnStatus.COMPLETED, tokens=10)
        finished.append(started.turn.id)
    # Started first, finished last: placed by when it started, and only once it has finished.
    early = await _start(store, conversation.id, "slow")
    late = await _start(other, conversation.id, "fast")
    await other.finish_turn(late, TurnStatus.COMPLETED, tokens=10)
    assert (await store.start_turn(OWNER_ID, conversation.id, "next", max_tokens=1000)).context_ids == [
        *finished,
        late.id,
    ]
    await store.finish_turn(early, TurnStatus.FAILED, tokens=10)
    last = await store.start_turn(OWNER_ID, conversation.id, "last", max_tokens=35)
    assert last.context_ids == [finished[-1], early.id, late.id]  # the newest that fit 35 tokens, oldest first


async def test_a_turn_cannot_start_in_a_deleted_conversation(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    turn = await _start(store, conversation.id, "hi")
    await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=1)
    await store.delete(OWNER_ID, conversation.id)
    with pytest.raises(ConversationNotFoundError):
        await store.start_turn(OWNER_ID, conversation.id, "again", max_tokens=1000)


async def test_a_turn_ends_quietly_when_its_conversation_was_deleted_while_it_ran(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    turn = await _start(store, conversation.id, "going")
    await store.delete(OWNER_ID, conversation.id)
    answer = assistant_message(turn, "33333333-3333-3333-3333-333333333333", 1, "too late")
    await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=1, answer=answer)
    with pytest.raises(ConversationNotFoundError):
        await store.history(OWNER_ID, conversation.id)


async def test_tool_calls_left_running_are_cancelled_when_the_turn_ends(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    turn = await _start(store, conversation.id, "go")
    call = NewToolCall(
        id="11111111-1111-1111-1111-111111111111", call_id="c1", name="t__x", server="t", arguments_json="{}"
    )
    await store.add_assistant_message(turn, "22222222-2222-2222-2222-222222222222", 1, "", [call])
    await store.finish_turn(turn, TurnStatus.CANCELLED, tokens=0)
    turns = await store.history(OWNER_ID, conversation.id)
    [stored] = turns[0].messages[1].tool_calls
    assert (stored.status, stored.is_error) == ("cancelled", True)


async def test_interrupted_turns_are_marked_at_start_up(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    await _start(store, conversation.id, "lost?")
    assert await store.mark_interrupted() == 1
    turns = await store.history(OWNER_ID, conversation.id)
    assert turns[0].status == "interrupted"
    assert [m.content for m in turns[0].messages] == ["lost?"]


async def test_delete_removes_the_conversation_with_everything_in_it(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    turn = await _start(store, conversation.id, "bye")
    await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=1)
    await store.delete(OWNER_ID, conversation.id)
    with pytest.raises(ConversationNotFoundError):
        await store.history(OWNER_ID, conversation.id)
    with pytest.raises(ConversationNotFoundError):
        await store.start_turn(OWNER_ID, conversation.id, "again", max_tokens=1000)


async def test_message_pages_are_newest_first_complete_and_keep_each_turns_order(store: ConversationStore) -> None:
    conversation = await store.create(OWNER_ID)
    expected: list[str] = []
    for number in range(4):
        turn = await _start(store, conversation.id, f"q{number}")
        for seq in (1, 2):
            await store.add_assistant_message(turn, new_id(), seq, f"a{number}.{seq}")
        await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=1)
        expected += [f"q{number}", f"a{number}.1", f"a{number}.2"]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        messages, cursor = await store.messages_page(OWNER_ID, conversation.id, 5, cursor)
        assert len(messages) <= 5
        seen.extend(message.content for message in messages)
        if cursor is None:
            break
    assert seen == expected[::-1]
    with pytest.raises(ConversationNotFoundError):
        await store.messages_page(OWNER_ID, "no-such-conversation", 5, None)
    with pytest.raises(BadRequestError):
        await store.messages_page(OWNER_ID, conversation.id, 5, "not-a-cursor")


async def test_pages_are_newest_first_and_complete(store: ConversationStore) -> None:
    created = [(await store.create(OWNER_ID, f"c{i}")).id for i in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        rows, cursor = await store.page(OWNER_ID, 3, cursor)
        seen.extend(row.id for row in rows)
        if cursor is None:
            break
    assert seen == created[::-1]


async def test_another_users_conversation_is_not_found_by_any_method_and_stays_as_it_was(
    database: Database, store: ConversationStore
) -> None:
    member = await UserStore(database).create("member@example.com", None, None, UserRole.MEMBER)
    mine = await store.create(OWNER_ID, "mine")
    turn = await _start(store, mine.id, "private")
    await store.finish_turn(turn, TurnStatus.COMPLETED, tokens=1)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: store.get(member.id, mine.id),
        lambda: store.rename(member.id, mine.id, "taken"),
        lambda: store.delete(member.id, mine.id),
        lambda: store.messages_page(member.id, mine.id, 10, None),
        lambda: store.history(member.id, mine.id),
        lambda: store.start_turn(member.id, mine.id, "hijack", max_tokens=1000),
    ]
    for attempt in attempts:
        with pytest.raises(ConversationNotFoundError):
            await attempt()
    assert (await store.page(member.id, 10, None))[0] == []
    assert (await store.get(OWNER_ID, mine.id)).title == "mine"
    messages, _ = await store.messages_page(OWNER_ID, mine.id, 10, None)
    assert [message.content for message in messages] == ["private"]
    # Each user has a legacy conversation of their own.
    theirs = await store.start_turn(member.id, None, "hello", max_tokens=1000)
    assert theirs.turn.conversation_id == (await store.legacy(member.id)).id != (await store.legacy(OWNER_ID)).id
    assert theirs.context_ids == []


async def test_legacy_conversation_is_created_once_and_reused(store: ConversationStore) -> None:
    first = await store.legacy(OWNER_ID)
    assert (await store.legacy(OWNER_ID)).id == first.id
    assert first.kind == "legacy"


async def test_legacy_turns_go_to_the_newest_legacy_conversation_created_on_first_use(
    store: ConversationStore,
) -> None:
    first = await _start(store, None, "hello")
    again = await store.start_turn(OWNER_ID, None, "again", max_tokens=1000)
    assert again.turn.conversation_id == first.conversation_id == (await store.legacy(OWNER_ID)).id
    assert again.context_ids == []  # `first` is still running
    fresh = await store.new_legacy(OWNER_ID)
    after_clear = await _start(store, None, "after clear")
    assert after_clear.conversation_id == fresh.id != first.conversation_id


@pytest.mark.parametrize("build", ["models", "migrations"])
async def test_the_database_bumps_the_version_whenever_a_finished_turn_is_written_by_anyone(
    database: Database, build: str
) -> None:
    if build == "models":
        await upgrade(database)
    else:
        await migrate(database, "head")
    store = ConversationStore(database)
    conversation = await store.create(OWNER_ID)
    version = select(Conversation.version).where(Conversation.id == conversation.id)

    async def current() -> int:
        return int(await database.read(lambda connection: connection.execute(version).scalar_one()))

    running = await _start(store, conversation.id, "running")
    assert await current() == 0  # a running turn changes no context
    await store.finish_turn(running, TurnStatus.COMPLETED, tokens=1)
    assert await current() == 1

    def another_writer(connection: Connection) -> None:  # raw SQL, as another program would write
        row = {"c": conversation.id, "at": utcnow()}
        connection.execute(
            text(
                "INSERT INTO turns (id, conversation_id, status, tokens, started_at) "
                "VALUES ('x', :c, 'completed', 1, :at)"
            ),
            row,
        )
        connection.execute(text("UPDATE turns SET tokens = 2 WHERE id = 'x'"))
        connection.execute(text("DELETE FROM turns WHERE id = 'x'"))

    await database.write(another_writer)
    assert await current() == 4
    # And the store, which remembered the turns at version 1, reads them again.
    assert (await store.start_turn(OWNER_ID, conversation.id, "next", max_tokens=1000)).context_ids == [running.id]
