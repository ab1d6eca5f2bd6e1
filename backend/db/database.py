"""The database: where transactions run, the same way on SQLite and PostgreSQL.

A transaction is a plain function of a SQLAlchemy `Connection`, committed when it returns and rolled back when it
raises; `Database.write` runs one, `Database.read` runs one that is never committed. Everything SQLite needs stays
in this module. On SQLite (the default) a short write runs on the event loop's own thread, on one connection: a
chat turn's writes are a few hundred microseconds each, and handing each to a worker thread cost more than the
write itself. So that the loop never waits on a lock or a disk flush, that connection does not wait for another
process's write lock (a busy database sends the transaction to a worker thread that does wait), writes the caller
marks as long (deleting a large conversation, start-up's migrations and sweeps) run on that worker thread too, and
WAL checkpoints run on a thread of their own (see `SqliteDatabase._after_commit`). Reads use pooled connections on
worker threads and never wait for the writer (WAL). Any other URL, PostgreSQL included, runs the same functions on
its async driver through `run_sync`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import sqlalchemy
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
Transaction = Callable[[Connection], T]

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_READERS = 4
SQLITE_WAITING_WRITERS = 8  # threads that may wait for another process's write lock at once
# Fewer, larger checkpoints copy a page the turns keep rewriting (an index's last leaf) once per round, not once
# every few commits.
CHECKPOINT_EVERY_COMMITS = 1_000
# The writer copies the WAL's tail itself (see SqliteDatabase._checkpoint_tail) only when the thread left at most
# this many frames: more means a reader's snapshot held them back, and copying them would stall the loop.
TAIL_MAX_FRAMES = 1_000
# A WAL file longer than this is cut back to it when SQLite starts writing it from the beginning again.
WAL_SIZE_LIMIT_BYTES = 64 * 2**20
CHECKPOINT_THREAD = "sqlite-checkpoint"
DATABASE_POOL_SIZE = 30  # connections to a server database (PostgreSQL)


def async_url(url: str) -> str:
    """`postgresql://...` as users write it, with the async driver SQLAlchemy needs."""
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database(Protocol):
    async def write(self, transaction: Transaction[T], *, is_long: bool = False) -> T:
        """Run `transaction` in a write transaction; commit if it returns, roll back if it raises.

        `is_long`: it may touch many rows (a large delete, a migration), so it must not run on the event loop."""
        ...

    async def read(self, transaction: Transaction[T]) -> T:
        """Run `transaction` on a connection that is never committed."""
        ...

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        ...

    async def aclose(self) -> None: ...


def open_database(url: str) -> Database:
    """The database at `url`: SQLite (its folder created) or anything SQLAlchemy's async drivers reach."""
    if is_sqlite(url):
        return SqliteDatabase(url)
    return AsyncDriverDatabase(url)


def _select_one(connection: Connection) -> None:
    connection.execute(text("SELECT 1"))


class SqliteDatabase:
    def __init__(self, url: str) -> None:
        url = url.replace("sqlite+aiosqlite://", "sqlite://", 1)
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sqlalchemy.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "begin", _sqlite_begin)
        self._writer: Connection | None = None  # the event loop's
        self._waiting_writer: Connection | None = None  # a worker thread's, for when another process writes
        self._waiting_lock = threading.Lock()
        self._waiting_threads = anyio.CapacityLimiter(SQLITE_WAITING_WRITERS)
        self._read_threads = anyio.CapacityLimiter(SQLITE_READERS)
        self._commits = 0
        self._checkpointer = threading.Thread()  # never started: not alive
        self._tail_due = False  # the checkpoint thread ran: the writer checkpoints what came after its start
        self._frames_left = 0  # the frames the thread's last checkpoint could not copy

    async def write(self, transaction: Transaction[T], *, is_long: bool = False) -> T:
        if is_long:
            return await anyio.to_thread.run_sync(self._write_waiting, transaction, limiter=self._waiting_threads)
        writer = self._loop_writer()
        try:
            with writer.begin():
                result = transaction(writer)
        except (OperationalError, sqlite3.OperationalError) as exc:  # BEGIN, said in `_sqlite_begin`, is not wrapped
            if not _is_busy(exc):
                raise
            # Another connection holds the write lock (BEGIN IMMEDIATE failed, so nothing ran): wait on a thread.
            return await anyio.to_thread.run_sync(self._write_waiting, transaction, limiter=self._waiting_threads)
        self._after_commit()
        return result

    def _after_commit(self) -> None:
        """Every CHECKPOINT_EVERY_COMMITS commits, copy the WAL into the database file on a thread of its own (at
        most one at a time, so no request waits for it); once it is done, copy the frames committed meanwhile."""
        self._commits += 1
        if self._tail_due and not self._checkpointer.is_alive():
            self._tail_due = False
            if self._frames_left <= TAIL_MAX_FRAMES:  # more: a reader held them back; the next round tries again
                self._checkpoint_tail()
        elif self._commits >= CHECKPOINT_EVERY_COMMITS and not self._checkpointer.is_alive():
            self._commits = 0
            self._checkpointer = threading.Thread(target=self._checkpoint, name=CHECKPOINT_THREAD, daemon=True)
            self._checkpointer.start()
            self._tail_due = True

    def _checkpoint_tail(self) -> None:
        # SQLite writes its WAL from the beginning again only once a checkpoint has copied every frame in it, and
        # under steady writes the thread's checkpoint never has: the frames committed while it ran are left, so
        # the WAL grew without end. Those few frames are copied here, on the writer, between transactions;
        # PASSIVE never waits (a reader's snapshot keeps its frames, and the next round tries again).
        driver = self._loop_writer().connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)  # the sqlite:// dialect's driver
        try:
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").close()
        except sqlite3.OperationalError as exc:  # another process is checkpointing: its checkpoint will do
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise

    def _loop_writer(self) -> Connection:
        if self._writer is None:
            writer = self.engine.connect()
            writer.info["is_writer"] = True
            driver = writer.connection.driver_connection
            assert driver is not None  # a checked-out connection always has one
            driver.execute("PRAGMA busy_timeout=0")  # never wait on the loop: see write()
            driver.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread of their own
            self._writer = writer
        return self._writer

    def _write_waiting(self, transaction: Transaction[T]) -> T:
        with self._waiting_lock:
            if self._waiting_writer is None:
                self._waiting_writer = self.engine.connect()
                self._waiting_writer.info["is_writer"] = True
            with self._waiting_writer.begin():
                return transaction(self._waiting_writer)

    async def read(self, transaction: Transaction[T]) -> T:
        return await anyio.to_thread.run_sync(self._read_now, transaction, limiter=self._read_threads)

    def _read_now(self, transaction: Transaction[T]) -> T:
        with self.engine.connect() as connection, connection.begin():
            return transaction(connection)

    def _checkpoint(self) -> None:
        # PASSIVE: copies what it can into the database file without waiting for readers or blocking the writer.
        # Outside any transaction (SQLite refuses a checkpoint inside one), so on the driver's connection.
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            if driver is not None:
                _busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._frames_left = max(frames - copied, 0)  # -1 and -1: not in WAL mode

    async def ping(self) -> None:
        # Abandoned on cancel: a health check that gives up must not wait for a stuck disk.
        await anyio.to_thread.run_sync(self._read_now, _select_one, abandon_on_cancel=True)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()

        def close() -> None:
            if self._checkpointer.is_alive():
                self._checkpointer.join()
            with self._waiting_lock:
                if self._waiting_writer is not None:
                    self._waiting_writer.close()
                self.engine.dispose()

        await anyio.to_thread.run_sync(close)


def _is_busy(exc: OperationalError | sqlite3.OperationalError) -> bool:
    error = exc.orig if isinstance(exc, OperationalError) else exc
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off: SQLAlchemy's "begin" event below says BEGIN, so reads get
    # one snapshot and the writer takes SQLite's write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE: another process's writer makes this one wait at BEGIN (busy_timeout), never fail mid-transaction.
    driver = connection.connection.driver_connection
    assert driver is not None  # a checked-out connection always has one
    driver.execute("BEGIN IMMEDIATE" if connection.info.get("is_writer") else "BEGIN")


class AsyncDriverDatabase:
    def __init__(self, url: str) -> None:
        # No overflow: an overflow connection is closed when it is checked in, so under load each was opened again
        # moments later (a server process started, a login, statements prepared again). Pre-ping stays: it costs
        # round trips, but a database restart then fails no request.
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=DATABASE_POOL_SIZE, max_overflow=0, pool_pre_ping=True
        )

    async def write(self, transaction: Transaction[T], *, is_long: bool = False) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(transaction)

    async def read(self, transaction: Transaction[T]) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(transaction)

    async def ping(self) -> None:
        await self.read(_select_one)

    async def aclose(self) -> None:
        await self.engine.dispose()
