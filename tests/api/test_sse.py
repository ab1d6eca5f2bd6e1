"""The SSE turn stream on its own: keep-alive comments while a turn is quiet, errors as events, then done."""

from __future__ import annotations

import anyio
from starlette.types import Message

from backend.api.sse import TurnStream
from backend.services.chat_service import Emit, TurnOutcome
from backend.services.llm_provider import LLMError

KEEPALIVE = b": keep-alive\n\n"


async def test_stream_sends_keepalives_while_the_turn_is_quiet_then_error_and_done() -> None:
    keepalive_seen = anyio.Event()
    bodies: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"] == KEEPALIVE:
                keepalive_seen.set()

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def quiet_turn(_emit: Emit) -> TurnOutcome:
        await keepalive_seen.wait()
        raise LLMError("the model gave up")

    with anyio.fail_after(10):
        await TurnStream(quiet_turn, keepalive_s=0.01)({"type": "http"}, receive, send)
    text = b"".join(bodies).decode()
    assert text.startswith(KEEPALIVE.decode())
    error_at, done_at = text.index("event: error\nid: 1\n"), text.index("event: done\nid: 2\n")
    assert error_at < done_at
    assert '"detail":"the model gave up"' in text
