"""Prepared statements: the chat path's SQL, run on SQLite's driver without SQLAlchemy's per-call machinery.

A chat turn runs about ten statements. Through `Connection.execute` each one builds an execution context and a
result object, which on SQLite cost as much CPU as SQLite itself. A `Prepared` statement is still written,
compiled and typed by SQLAlchemy: it compiles once per set of parameter names, and converts each parameter with
the bind processor of its column's type (the same conversion `Connection.execute` applies: datetimes as SQLite's
text, booleans as integers, JSON as text), then hands SQL and values to the driver's cursor inside the
connection's transaction. On any other database it is `Connection.execute`.

The one SQLite-only shortcut of the chat path: worth far more than 5% of a turn (bench/README.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, Select, Update
from sqlalchemy.engine import Dialect

# Values go to and come from the database as whatever its columns hold.
Statement = Insert | Update | Select[*tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    # Per positional parameter: the key of `params` it comes from (None: the statement's own value, `fixed`),
    # and the conversion its column's type applies.
    slots: tuple[tuple[str | None, Callable[[Any], Any] | None, Any], ...]


class Prepared:
    """A Core statement (no expanding IN parameters), run on SQLite's cursor directly and elsewhere as usual."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def run(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Execute with `params` (for an INSERT or UPDATE, also the columns it sets); the rows it changed."""
        if connection.dialect.name != "sqlite":
            return connection.execute(self.statement, dict(params)).rowcount
        cursor = _driver(connection).execute(*self._bound(connection.dialect, params))
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row (the rows share their keys)."""
        if connection.dialect.name != "sqlite":
            connection.execute(self.statement, dict(rows[0]) if len(rows) == 1 else [dict(row) for row in rows])
            return
        for row in rows:
            self.run(connection, row)

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """A query's rows as tuples, its values as the driver returns them (SQLite: text for datetimes)."""
        if connection.dialect.name != "sqlite":
            return [tuple(row) for row in connection.execute(self.statement, dict(params))]
        cursor = _driver(connection).execute(*self._bound(connection.dialect, params))
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    def _bound(self, dialect: Dialect, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        plan = self._plans.get(tuple(params))
        if plan is None:
            plan = self._plans[tuple(params)] = _plan(self.statement, dialect, list(params))
        return plan.sql, [
            fixed if key is None else params[key] if process is None else process(params[key])
            for key, process, fixed in plan.slots
        ]


def _plan(statement: Statement, dialect: Dialect, keys: list[str]) -> _Plan:
    """The SQL and where each of its parameters comes from: `keys`, or the statement itself (a LIMIT, a SET to a
    constant), converted once here. What `Compiled.construct_params` would work out on every call."""
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    defaulted = [*getattr(compiled, "insert_prefetch", ()), *getattr(compiled, "update_prefetch", ())]
    if defaulted:  # their Python-side defaults run in SQLAlchemy's execution context, which this skips
        raise ValueError(f"give a value for every column with a default: {', '.join(c.key for c in defaulted)}")
    slots: list[tuple[str | None, Callable[[Any], Any] | None, Any]] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in keys:
            slots.append((name, process, None))
        elif bind.required:
            raise ValueError(f"no value for the parameter {name!r} of {statement}")
        else:
            value = bind.effective_value
            slots.append((None, None, value if process is None else process(value)))
    return _Plan(compiled.string, tuple(slots))


def _driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    if not isinstance(driver, sqlite3.Connection):  # pragma: no cover - a SQLite connection always has one
        raise RuntimeError("no SQLite driver connection to run a prepared statement on")
    return driver
