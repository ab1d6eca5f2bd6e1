"""The database: where the store's transactions run.

A transaction is a plain function of a SQLAlchemy `Connection`, committed when it returns and rolled back when
it raises. SQLite (the default) runs each one on a worker thread over the synchronous driver: one thread hop per
transaction, where the async driver hops threads for every DBAPI call (measured on a chat turn's seven
transactions: 16.5 ms of CPU through aiosqlite and the ORM, 3.1 ms through this and Core). Writes take turns
on one connection under a thread lock, because SQLite has one writer and a lock is cheaper than its busy
handler; reads use pooled connections beside it and never wait for the writer (WAL). Any other URL,
PostgreSQL included, runs the same functions on the async driver through `run_sync`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import sqlalchemy
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
Transaction = Callable[[Connection], T]

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_READERS = 4
SQLITE_WRITE_THREADS = 8  # threads that may wait for the write lock at once


def async_url(url: str) -> str:
    """`postgresql://...` as users write it, with the async driver SQLAlchemy needs."""
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database(Protocol):
    async def write(self, transaction: Transaction[T]) -> T:
        """Run `transaction` in a write transaction; commit if it returns."""
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
        self._writer: Connection | None = None
        # Writers take turns on a thread lock, held for the transaction alone. (A CapacityLimiter(1) would be
        # held until the event loop got round to the result: under load, several ms per write, all queued.)
        self._write_lock = threading.Lock()
        self._write_threads = anyio.CapacityLimiter(SQLITE_WRITE_THREADS)
        self._read_threads = anyio.CapacityLimiter(SQLITE_READERS)

    async def write(self, transaction: Transaction[T]) -> T:
        return await anyio.to_thread.run_sync(self._write_now, transaction, limiter=self._write_threads)

    def _write_now(self, transaction: Transaction[T]) -> T:
        with self._write_lock:
            if self._writer is None:
                self._writer = self.engine.connect()
                self._writer.info["is_writer"] = True
            with self._writer.begin():
                return transaction(self._writer)

    async def read(self, transaction: Transaction[T]) -> T:
        return await anyio.to_thread.run_sync(self._read_now, transaction, limiter=self._read_threads)

    def _read_now(self, transaction: Transaction[T]) -> T:
        with self.engine.connect() as connection, connection.begin():
            return transaction(connection)

    async def ping(self) -> None:
        # Abandoned on cancel: a health check that gives up must not wait for a stuck disk.
        await anyio.to_thread.run_sync(self._read_now, _select_one, abandon_on_cancel=True)

    async def aclose(self) -> None:
        def close() -> None:
            with self._write_lock:
                if self._writer is not None:
                    self._writer.close()
                self.engine.dispose()

        await anyio.to_thread.run_sync(close)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off: SQLAlchemy's "begin" event below says BEGIN, so reads get
    # one snapshot and the writer takes SQLite's write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE: another process's writer makes this one wait at BEGIN (busy_timeout), never fail mid-transaction.
    # Said to the driver directly: through SQLAlchemy's execute it cost as much as the transaction's INSERT.
    driver = connection.connection.driver_connection
    if driver is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("no SQLite connection to begin a transaction on")
    driver.execute("BEGIN IMMEDIATE" if connection.info.get("is_writer") else "BEGIN")


class AsyncDriverDatabase:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(
            async_url(url), pool_size=10, max_overflow=20, pool_pre_ping=True
        )

    async def write(self, transaction: Transaction[T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(transaction)

    async def read(self, transaction: Transaction[T]) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(transaction)

    async def ping(self) -> None:
        await self.read(_select_one)

    async def aclose(self) -> None:
        await self.engine.dispose()
