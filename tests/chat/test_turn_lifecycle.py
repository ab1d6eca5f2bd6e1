"""Every turn that was stored ends settled, its model stream closed inside the turn, whatever cuts it short."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import AsyncGeneratorType
from typing import Any

import anyio
import pytest
from sqlalchemy import select

from backend.auth.principal import OWNER
from backend.db.database import open_database
from backend.db.models import Turn
from backend.services.chat_service import TurnEvent
from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.services import empty_postgres
from tests.support.specs import REPO_ROOT, chat_settings
from tests.support.sse import turn_events
from tests.support.waiting import eventually, wait_until


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    return await empty_postgres()


@pytest.fixture
async def app(tmp_path: Path, fake_llm: FakeOpenAI, database_url: str) -> AsyncIterator[RunningApp]:
    async with run_app(chat_settings(tmp_path, fake_llm, database_url=database_url), []) as running:
        yield running


async def turn_statuses(database_url: str, conversation_id: str) -> list[str]:
    database = open_database(database_url)
    query = select(Turn.status).where(Turn.conversation_id == conversation_id).order_by(Turn.started_at)
    try:
        return list(await database.read(lambda connection: connection.execute(query).scalars().all()))
    finally:
        await database.aclose()


async def test_a_turn_is_settled_as_cancelled_when_its_watcher_goes_away_at_message_created(
    app: RunningApp, fake_llm: FakeOpenAI, database_url: str
) -> None:
    conversation_id = await app.new_conversation()
    with anyio.CancelScope() as scope:

        async def leave_at_message_created(event: TurnEvent) -> None:
            if event.type == "message.created":  # the watcher (an SSE client) goes away right here
                scope.cancel()
                await anyio.lowlevel.checkpoint()

        await app.chat.run_turn(OWNER, conversation_id, "hello", leave_at_message_created)
    assert scope.cancelled_caught
    assert await turn_statuses(database_url, conversation_id) == ["cancelled"]
    assert fake_llm.requests == []  # the model was never asked
    assert [(m["role"], m["content"]) for m in await app.messages(conversation_id)] == [("user", "hello")]


async def test_a_turn_cancelled_while_its_first_transaction_runs_is_stored_and_settled(
    app: RunningApp, fake_llm: FakeOpenAI, database_url: str
) -> None:
    conversation_id = await app.new_conversation()
    with anyio.CancelScope() as scope:
        scope.cancel()  # lands at the first await: the turn's first transaction (a commit in flight on PostgreSQL)
        await app.chat.run_turn(OWNER, conversation_id, "hello")
    assert await turn_statuses(database_url, conversation_id) == ["cancelled"]
    assert fake_llm.requests == []


async def test_an_sse_client_that_leaves_after_message_created_leaves_a_cancelled_turn(
    app: RunningApp, fake_llm: FakeOpenAI, database_url: str
) -> None:
    conversation_id = await app.new_conversation()
    fake_llm.script(Reply(text="never", hang=True))
    async with turn_events(app.http, conversation_id, "hello") as stream:
        async for event in stream:
            assert event.type == "message.created"
            break  # leaving the block closes the connection
    await wait_until(lambda: app.chat.running.count() == 0)

    async def is_settled() -> bool:
        return await turn_statuses(database_url, conversation_id) == ["cancelled"]

    await eventually(is_settled)


class _FinalizedGenerators:
    """Async generators of our own code that the garbage collector had to close: what a turn leaves open."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __enter__(self) -> _FinalizedGenerators:
        self._hooks = sys.get_asyncgen_hooks()
        previous = self._hooks.finalizer

        def finalizer(generator: AsyncGenerator[Any, Any]) -> None:
            code = generator.ag_code if isinstance(generator, AsyncGeneratorType) else None
            if code is not None and code.co_filename.startswith(str(REPO_ROOT / "backend")):
                self.names.append(code.co_qualname)
            if previous is not None:
                previous(generator)

        sys.set_asyncgen_hooks(firstiter=self._hooks.firstiter, finalizer=finalizer)
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.set_asyncgen_hooks(*self._hooks)


async def test_a_turns_model_streams_are_closed_inside_the_turn_whether_it_completes_or_is_cancelled(
    app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await app.new_conversation()
    cut_short = "this answer is cut short after its first word, long before its end"
    fake_llm.script(Reply.say("streamed whole"), Reply.say(cut_short, chunk_delay_s=0.2))
    with _FinalizedGenerators() as finalized:
        ignore: Callable[[TurnEvent], Awaitable[None]] = lambda _event: anyio.lowlevel.checkpoint()  # noqa: E731
        completed = await app.chat.run_turn(OWNER, conversation_id, "stream it", ignore)
        assert completed.final_message is not None
        assert completed.final_message.content == "streamed whole"
        with anyio.CancelScope() as scope:

            async def cancel_at_first_delta(event: TurnEvent) -> None:
                if event.type == "message.delta":
                    scope.cancel()

            await app.chat.run_turn(OWNER, conversation_id, "cut it short", cancel_at_first_delta)
        gc.collect()
        await anyio.lowlevel.checkpoint()
    assert finalized.names == []
    await wait_until(lambda: fake_llm.disconnects == 1)  # the cut-short answer's connection was closed
