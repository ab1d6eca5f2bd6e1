"""Prepared statements on SQLite store and read exactly what SQLAlchemy's own execute does."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Connection, Insert, Update, bindparam, insert, select, update

from backend.db.models import Base, Conversation, Message, ToolCall, Turn
from backend.db.prepared import Prepared

STARTED = datetime(2026, 12, 1, 22, 30, 5, 123456, tzinfo=UTC)
CONVERSATION = {"id": "c1", "title": None, "kind": "legacy", "created_at": STARTED, "updated_at": STARTED, "version": 0}
TURN = {"id": "t1", "conversation_id": "c1", "status": "completed", "tokens": 42, "started_at": STARTED}
MESSAGE = {
    "id": "m1",
    "conversation_id": "c1",
    "turn_id": "t1",
    "seq": 0,
    "role": "assistant",
    "content": "Ünïcode ✓ and 'quotes'",
    "status": "completed",
    "created_at": STARTED,
}


def _tool_call(call_id: str, result: dict[str, Any] | None, is_error: bool) -> dict[str, Any]:
    return {
        "id": call_id,
        "message_id": "m1",
        "conversation_id": "c1",
        "seq": 0,
        "call_id": f"call_{call_id}",
        "name": "calculator__add",
        "server": None,
        "arguments_json": '{"a": 2}',
        "result": result,
        "result_text": None,
        "is_error": is_error,
        "status": "running",
        "duration_ms": 1.5,
        "created_at": STARTED,
    }


TOOL_CALLS = [_tool_call("k1", None, False), _tool_call("k2", {"content": [{"type": "text"}]}, True)]


@pytest.fixture
def connections(tmp_path: Path) -> Iterator[tuple[Connection, Connection]]:
    """Two empty databases with the app's schema, each in an open transaction."""
    engines = [sqlalchemy.create_engine(f"sqlite:///{tmp_path / name}") for name in ("prepared.db", "execute.db")]
    for engine in engines:
        Base.metadata.create_all(engine)
    with engines[0].begin() as prepared, engines[1].begin() as executed:
        yield prepared, executed
    for engine in engines:
        engine.dispose()


def _table_rows(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    names = ("conversations", "turns", "messages", "tool_calls")
    return {name: driver.execute(f"SELECT * FROM {name} ORDER BY id").fetchall() for name in names}


def test_prepared_writes_store_the_same_values_as_sqlalchemys_execute(
    connections: tuple[Connection, Connection],
) -> None:
    prepared, executed = connections
    finish = {"b_id": "t1", "status": "cancelled", "finished_at": STARTED + timedelta(seconds=2)}
    writes: list[tuple[Insert | Update, list[dict[str, Any]]]] = [
        (insert(Conversation), [CONVERSATION]),
        (insert(Turn), [TURN]),
        (insert(Message), [MESSAGE]),
        (insert(ToolCall), TOOL_CALLS),
        (update(Turn).where(Turn.id == bindparam("b_id")), [finish]),
        (update(ToolCall).where(ToolCall.id == bindparam("b_id")), [{"b_id": "k1", "is_error": True}]),
    ]
    for statement, rows in writes:
        Prepared(statement).run_many(prepared, rows)
        executed.execute(statement, rows)

    assert _table_rows(prepared) == _table_rows(executed)
    assert _table_rows(prepared)["tool_calls"][0][8] == "null"  # JSON None is stored as JSON, as SQLAlchemy does


def test_prepared_rows_match_execute_and_apply_the_statements_own_limit(
    connections: tuple[Connection, Connection],
) -> None:
    connection, _ = connections
    Prepared(insert(Conversation)).run(connection, CONVERSATION)
    turns = [{**TURN, "id": f"t{i}", "started_at": STARTED + timedelta(seconds=i)} for i in range(5)]
    Prepared(insert(Turn)).run_many(connection, turns)
    query = (
        select(Turn.id, Turn.tokens)
        .where(Turn.started_at > bindparam("b_after"))
        .order_by(Turn.started_at.desc())
        .limit(2)
    )

    rows = Prepared(query).rows(connection, {"b_after": STARTED})

    assert rows == [tuple(row) for row in connection.execute(query, {"b_after": STARTED})]
    assert rows == [("t4", 42), ("t3", 42)]


def test_prepared_run_counts_the_rows_it_changed(connections: tuple[Connection, Connection]) -> None:
    connection, _ = connections
    Prepared(insert(Conversation)).run(connection, CONVERSATION)
    touch = Prepared(update(Conversation).where(Conversation.id == bindparam("b_id")))

    assert touch.run(connection, {"b_id": "c1", "updated_at": STARTED}) == 1
    assert touch.run(connection, {"b_id": "no-such-id", "updated_at": STARTED}) == 0
