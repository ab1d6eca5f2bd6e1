"""SQLite's writer: on the event loop, never waiting there for another process's lock or a long write, checkpointing
elsewhere."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from backend.db.database import CHECKPOINT_EVERY_COMMITS, CHECKPOINT_THREAD, SqliteDatabase
from tests.support.waiting import wait_until

PAGE_BYTES = 4096


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "app.db"


@pytest.fixture
async def database(path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(f"sqlite:///{path}")
    await database.write(lambda connection: connection.execute(text("CREATE TABLE t (x)")))
    try:
        yield database
    finally:
        await database.aclose()


def _insert(value: object) -> Callable[[Connection], None]:
    def transaction(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})

    return transaction


def _file_bytes(path: Path) -> int:
    return path.stat().st_size


async def _values(database: SqliteDatabase) -> list[object]:
    rows = await database.read(lambda connection: connection.execute(text("SELECT x FROM t ORDER BY rowid")).all())
    return [row[0] for row in rows]


async def test_write_waits_on_a_thread_while_another_process_holds_the_lock_and_the_loop_keeps_running(
    database: SqliteDatabase, path: Path
) -> None:
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, as far as SQLite knows
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES ('other')")
    is_written = anyio.Event()

    async def write() -> None:
        await database.write(_insert("ours"))
        is_written.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            for _ in range(20):  # the loop runs other tasks while the write waits for the lock
                await anyio.sleep(0.01)
            assert not is_written.is_set()
            other.execute("COMMIT")
            await is_written.wait()
    other.close()
    assert await _values(database) == ["other", "ours"]
    await database.write(_insert("after"))  # and the loop's own writer takes over again
    assert await _values(database) == ["other", "ours", "after"]


async def test_a_failing_transaction_stores_nothing_and_the_next_one_commits(database: SqliteDatabase) -> None:
    def half_then_fail(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES ('half')"))
        raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        await database.write(half_then_fail)
    await database.write(_insert("whole"))
    assert await _values(database) == ["whole"]


def _driver_insert(value: object) -> Callable[[Connection], None]:
    """An INSERT straight on the sqlite3 connection, as prepared statements run."""

    def transaction(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute("INSERT INTO t VALUES (?)", (value,))

    return transaction


def _insert_in_session(value: object) -> Callable[[Connection], None]:
    def transaction(connection: Connection) -> None:
        with Session(connection) as session:
            session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
            session.flush()

    return transaction


async def test_statements_on_the_driver_in_a_session_and_through_sqlalchemy_share_one_transaction(
    database: SqliteDatabase,
) -> None:
    def all_then_fail(connection: Connection) -> None:
        _driver_insert("driver")(connection)
        _insert("sqlalchemy")(connection)
        _insert_in_session("session")(connection)
        raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        await database.write(all_then_fail)
    assert await _values(database) == []

    def all_three(connection: Connection) -> None:
        _driver_insert("driver")(connection)
        _insert_in_session("session")(connection)
        _insert("sqlalchemy")(connection)

    await database.write(all_three)
    await database.write(_driver_insert("driver alone"))
    assert await _values(database) == ["driver", "session", "sqlalchemy", "driver alone"]


async def test_a_long_write_runs_off_the_event_loop_which_keeps_serving_meanwhile(database: SqliteDatabase) -> None:
    may_finish = threading.Event()

    def long_transaction(connection: Connection) -> None:
        _insert("long")(connection)
        # On the event loop's thread this would wait forever: nothing could set the event.
        if not may_finish.wait(timeout=5):
            raise TimeoutError("the event loop was blocked while the long write ran")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(database.write, long_transaction, is_long=True))
            await anyio.lowlevel.checkpoint()  # the loop runs this task while the write is under way
            may_finish.set()
    await database.write(_insert("after"))  # the loop's writer waits for nothing once it is done
    assert await _values(database) == ["long", "after"]


async def test_the_wal_is_checkpointed_into_the_database_file_while_the_app_writes(
    database: SqliteDatabase, path: Path
) -> None:
    blob = b"x" * PAGE_BYTES
    for _ in range(CHECKPOINT_EVERY_COMMITS):
        await database.write(_insert(blob))
    # The writer never checkpoints and nothing has closed, so only the checkpoint thread can move the pages
    # into the database file itself (while the writes go on: it is waited for here, not by them).
    await wait_until(lambda: path.stat().st_size > CHECKPOINT_EVERY_COMMITS * PAGE_BYTES)


async def test_the_wal_stays_bounded_while_the_app_writes_without_pause(database: SqliteDatabase, path: Path) -> None:
    blob = b"x" * PAGE_BYTES
    wal = path.with_name(path.name + "-wal")
    largest = 0
    for _ in range(6 * CHECKPOINT_EVERY_COMMITS):  # never a pause for the checkpoint thread to catch up in
        await database.write(_insert(blob))
        largest = max(largest, _file_bytes(wal))
    # Each commit adds about three frames (the row's page, its overflow page, the table's interior page). Once a
    # checkpoint has copied every frame, the next transaction writes the WAL from its beginning: it never holds
    # much more than one round of commits (six rounds' worth, 75 MB, when it was never started again).
    assert largest < 3 * CHECKPOINT_EVERY_COMMITS * 3 * (PAGE_BYTES + 24)
    assert len(await _values(database)) == 6 * CHECKPOINT_EVERY_COMMITS


async def test_the_writer_leaves_frames_a_reader_held_back_to_the_next_round_rather_than_copy_them_itself(
    database: SqliteDatabase, path: Path
) -> None:
    await database.write(_insert(b"first"))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a snapshot from before the round's commits
    blob = b"x" * PAGE_BYTES
    for _ in range(CHECKPOINT_EVERY_COMMITS - 1):
        await database.write(_insert(blob))
    size_before = _file_bytes(path)
    # The round's checkpoint thread could copy nothing past the reader's snapshot.
    await wait_until(lambda: CHECKPOINT_THREAD not in {thread.name for thread in threading.enumerate()})
    reader.execute("COMMIT")
    reader.close()
    await database.write(_insert(b"after"))
    # Copying the round's pages now would be a long pause on the event loop: they wait for the next round.
    assert _file_bytes(path) == size_before
    for _ in range(CHECKPOINT_EVERY_COMMITS):
        await database.write(_insert(blob))
    await wait_until(lambda: path.stat().st_size > CHECKPOINT_EVERY_COMMITS * PAGE_BYTES)
