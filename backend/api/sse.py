"""A chat turn streamed as Server-Sent Events.

Written as a plain ASGI response rather than a generator-based SSE library: the turn, the keep-alive and the
disconnect watcher are three tasks in one task group, so a client that goes away cancels the turn (which
stores what it had, status `cancelled`) with no generator left suspended inside a cancel scope.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend.db.models import TurnStatus
from backend.errors import AppError, problem_response
from backend.logging import current_request_id
from backend.services.chat_service import Emit, TurnEvent, TurnOutcome

KEEPALIVE_S = 15.0

Turn = Callable[[Emit], Awaitable[TurnOutcome]]


def sse_frame(event: str, event_id: int, data: Any) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"event: {event}\nid: {event_id}\ndata: {payload}\n\n".encode()


class TurnStream(Response):
    """ASGI response: runs `turn`, sending each of its events as it happens, then `done`."""

    media_type = "text/event-stream"

    def __init__(self, turn: Turn, keepalive_s: float = KEEPALIVE_S) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self._turn, self._keepalive_s = turn, keepalive_s
        self._next_id = 0
        self._lock = anyio.Lock()
        # The stream's headers go with its first frame: a turn that fails before its first event (no such
        # conversation) answers a plain problem instead, with no read beforehand to find that out.
        self._is_started = False
        self._refusal: Response | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            async def keepalive() -> None:
                while True:
                    await anyio.sleep(self._keepalive_s)
                    await self._write(send, b": keep-alive\n\n")

            async def run() -> None:
                await self._run_turn(send)
                tg.cancel_scope.cancel()

            tg.start_soon(watch_disconnect)
            tg.start_soon(keepalive)
            tg.start_soon(run)
        if self._refusal is not None:
            await self._refusal(scope, receive, send)
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._start(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client is gone

    async def _run_turn(self, send: Send) -> None:
        async def emit(event: TurnEvent) -> None:
            await self._event(send, event.type, event.data)

        try:
            outcome = await self._turn(emit)
            if outcome.status is TurnStatus.CANCELLED:
                await self._event(send, "error", _problem(409, "turn-cancelled", "Turn cancelled", CANCELLED_DETAIL))
        except AppError as exc:
            if not self._is_started:
                self._refusal = problem_response(
                    exc.status, exc.slug, exc.title, exc.detail, exc.extra, headers=exc.headers
                )
                return
            await self._event(send, "error", _problem(exc.status, exc.slug, exc.title, exc.detail))
        await self._event(send, "done", {})

    async def _event(self, send: Send, event: str, data: Any) -> None:
        async with self._lock:
            self._next_id += 1
            frame = sse_frame(event, self._next_id, data)
        await self._write(send, frame)

    async def _write(self, send: Send, body: bytes) -> None:
        async with self._lock:  # frames never interleave
            await self._start(send)
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _start(self, send: Send) -> None:
        if not self._is_started:
            self._is_started = True
            await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})


STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass events through as they come
]


CANCELLED_DETAIL = "The turn was cancelled; what it had produced is stored with status 'cancelled'."


def _problem(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
    }
