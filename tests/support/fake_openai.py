"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, scripted per test (and for benchmarks).

A real HTTP server speaking the wire format the official SDK parses: JSON answers, SSE chunks with tool-call
deltas, error answers with Retry-After. `python -m tests.support.fake_openai --port N` serves the benchmark's
calculator script.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from starlette.types import Message, Receive, Scope, Send


@dataclass
class ToolCallSpec:
    """One tool call the fake model asks for; a str `arguments` is sent verbatim (it may be invalid JSON)."""

    name: str
    arguments: str | dict[str, Any]
    id: str | None = None


@dataclass
class Reply:
    text: str | None = None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    status: int = 200
    retry_after: float | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    hang: bool = False  # never answer, until the client goes away
    usage: tuple[int, int] = (10, 5)

    @classmethod
    def say(cls, text: str, **options: Any) -> Reply:
        return cls(text=text, **options)

    @classmethod
    def call(cls, *calls: ToolCallSpec | tuple[str, dict[str, Any] | str], **options: Any) -> Reply:
        specs = [c if isinstance(c, ToolCallSpec) else ToolCallSpec(c[0], c[1]) for c in calls]
        return cls(tool_calls=specs, **options)

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Reply:
        return cls(status=status, retry_after=retry_after)


Responder = Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[float] = []
        self.disconnects = 0
        self.responder: Responder | None = None
        self._queue: deque[Reply] = deque()
        self._ids = itertools.count(1)

    def script(self, *replies: Reply) -> None:
        self._queue.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self.request_times.clear()
        self._queue.clear()
        self.responder = None
        self.disconnects = 0

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply(status=500, text="the fake model's script ran out")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if (method, path) == ("GET", "/v1/models"):
            await _json(send, 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
            return
        if (method, path) != ("POST", "/v1/chat/completions"):
            await _json(send, 404, _error_body(f"no route {method} {path}", "not_found"))
            return
        headers = dict(scope["headers"])
        body = await _read_body(receive)
        if not headers.get(b"authorization", b"").startswith(b"Bearer "):
            await _json(send, 401, _error_body("missing bearer token", "invalid_api_key"))
            return
        request = json.loads(body)
        self.requests.append(request)
        self.request_times.append(time.monotonic())
        reply = self._next_reply(request)
        try:
            await self._answer(request, reply, receive, send)
        except _ClientGone:
            self.disconnects += 1

    async def _answer(self, request: dict[str, Any], reply: Reply, receive: Receive, send: Send) -> None:
        if reply.hang:
            await _until_disconnect(receive)
            raise _ClientGone
        if reply.delay_s:
            await _sleep_unless_gone(reply.delay_s, receive)
        if reply.status != 200:
            extra = [(b"retry-after", f"{reply.retry_after:g}".encode())] if reply.retry_after is not None else []
            await _json(send, reply.status, _error_body(reply.text or f"scripted error {reply.status}"), extra)
            return
        calls = [
            {
                "id": spec.id or f"call_{next(self._ids)}",
                "type": "function",
                "function": {
                    "name": spec.name,
                    "arguments": spec.arguments if isinstance(spec.arguments, str) else json.dumps(spec.arguments),
                },
            }
            for spec in reply.tool_calls
        ]
        model = request.get("model", "gpt-4o-mini")
        if request.get("stream"):
            await self._stream(request, reply, calls, model, receive, send)
            return
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if calls:
            message["tool_calls"] = calls
        await _json(
            send,
            200,
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": _usage(reply),
            },
        )

    async def _stream(
        self,
        request: dict[str, Any],
        reply: Reply,
        calls: list[dict[str, Any]],
        model: str,
        receive: Receive,
        send: Send,
    ) -> None:
        completion_id = f"chatcmpl-{next(self._ids)}"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        chunks = [chunk({"role": "assistant", "content": ""})]
        text = reply.text or ""
        chunks.extend(chunk({"content": piece}) for piece in _words(text))
        for index, call in enumerate(calls):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [first]}))
            arguments = call["function"]["arguments"]
            middle = max(1, len(arguments) // 2)
            for piece in (arguments[:middle], arguments[middle:]):
                chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        chunks.append(chunk({}, "tool_calls" if calls else "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append({**chunk({}), "choices": [], "usage": _usage(reply)})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        try:
            for index, payload in enumerate(chunks):
                if index and reply.chunk_delay_s:
                    await _sleep_unless_gone(reply.chunk_delay_s, receive)
                body = f"data: {json.dumps(payload)}\n\n".encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        except OSError as exc:
            raise _ClientGone from exc


class _ClientGone(Exception):
    pass


def _words(text: str) -> list[str]:
    """Split text into chunks the way a model streams it: words, each keeping its trailing space."""
    pieces, current = [], ""
    for char in text:
        current += char
        if char == " ":
            pieces.append(current)
            current = ""
    return [*pieces, current] if current else pieces


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error_body(message: str, code: str = "scripted") -> dict[str, Any]:
    return {"error": {"message": message, "type": "fake_error", "code": code}}


async def _json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + (headers or [])})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message: Message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _sleep_unless_gone(seconds: float, receive: Receive) -> None:
    """Sleep; if the client disconnects meanwhile, raise _ClientGone."""
    is_gone = False
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal is_gone
            await _until_disconnect(receive)
            is_gone = True
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    if is_gone:
        raise _ClientGone


@asynccontextmanager
async def run_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a FakeOpenAI in this event loop on a pre-bound 127.0.0.1 socket; stopped when the block ends."""
    fake = FakeOpenAI()
    sock = socket.create_server(("127.0.0.1", 0))
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server = uvicorn.Server(uvicorn.Config(fake, log_config=None, access_log=False, lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield fake
        finally:
            server.should_exit = True
    sock.close()


def calculator_responder(request: dict[str, Any]) -> Reply:
    """The benchmark script: call calculator__add (2 and 3, or the first two integers of the user's message);
    after the tool result, answer with it. Distinct numbers per request let a benchmark catch crossed answers."""
    last = request["messages"][-1]
    if last.get("role") == "tool":
        return Reply.say(f"The answer is {last['content']}")
    numbers = [int(word) for word in str(last.get("content", "")).split() if word.isdigit()]
    a, b = [*numbers, 2, 3][:2] if len(numbers) != 1 else (numbers[0], 3)
    return Reply.call(("calculator__add", {"a": a, "b": b}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_openai")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    fake = FakeOpenAI()
    fake.responder = calculator_responder
    fake.base_url = f"http://{args.host}:{args.port}/v1"
    uvicorn.run(fake, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
