"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, scripted per test (and for benchmarks).

It is a real HTTP server (raw ASGI under uvicorn) speaking the wire format the official SDK parses: JSON
answers, SSE chunks with tool-call deltas, error answers with Retry-After. Tests go through the network like
production does, so nothing in the client is patched. `python -m tests.support.fake_openai --port N` serves
the benchmark's calculator script (or, with `--say`, one plain answer, and with `--delay-s`, a slow model).
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

import anyio
import msgspec
import uvicorn
from starlette.types import Message, Receive, Scope, Send

# A parsed JSON body: its values are whatever the client sent, so they stay `Any` until a test looks at them.
JsonObject = dict[str, Any]

MODEL = "gpt-4o-mini"
SHUTDOWN_GRACE_S = 2  # a request still hanging when the block exits must not stall the test


@dataclass
class ToolCallSpec:
    """One tool call the fake model asks for; a str `arguments` is sent verbatim (it may be invalid JSON)."""

    name: str
    arguments: str | dict[str, Any]
    id: str | None = None  # "call_<n>" when None


class ReplyOptions(TypedDict, total=False):
    """The knobs `Reply.say` and `Reply.call` pass through to `Reply`."""

    status: int
    retry_after: float | None
    delay_s: float
    chunk_delay_s: float
    end_delay_s: float
    hang: bool
    usage: tuple[int, int]


@dataclass
class Reply:
    """One scripted answer: text and/or tool calls, or an error, with optional timing faults."""

    text: str | None = None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    status: int = 200  # non-200: an error answer in OpenAI's error shape, never streamed
    retry_after: float | None = None  # Retry-After header (seconds) on error answers
    delay_s: float = 0.0  # before answering (before the first byte when streaming)
    chunk_delay_s: float = 0.0  # between streamed chunks
    end_delay_s: float = 0.0  # between `[DONE]` and the end of a streamed body: the last chunk in a packet of its own
    hang: bool = False  # never answer, until the client goes away
    usage: tuple[int, int] = (10, 5)  # prompt_tokens, completion_tokens
    raw_stream: bytes | None = None  # a streamed request's whole body, verbatim (SSE syntax and error events)

    @classmethod
    def say(cls, text: str, **options: Unpack[ReplyOptions]) -> Reply:
        """An assistant message with `text`."""
        return cls(text=text, **options)

    @classmethod
    def call(
        cls,
        *calls: ToolCallSpec | tuple[str, dict[str, Any] | str],
        text: str | None = None,
        **options: Unpack[ReplyOptions],
    ) -> Reply:
        """An assistant message asking for `calls`; a tuple is (name, arguments)."""
        specs = [c if isinstance(c, ToolCallSpec) else ToolCallSpec(c[0], c[1]) for c in calls]
        return cls(text=text, tool_calls=specs, **options)

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Reply:
        """An error answer with `status`, and a Retry-After header when `retry_after` is set."""
        return cls(status=status, retry_after=retry_after)


Responder = Callable[[JsonObject], Reply]  # request body -> reply, for scripts that depend on the request


class _ClientGoneError(Exception):
    """The client disconnected before the answer ended."""


class FakeOpenAI:
    """The ASGI app: answers chat.completions requests from a script queue, then from `responder`."""

    def __init__(self, *, is_recording: bool = True) -> None:
        self.base_url = ""
        # Every request body, for tests to inspect. A benchmark serves millions of history messages: kept,
        # they would grow the fake's heap without bound and its garbage collector's pauses with it. Not
        # recording, the fake also builds only what a responder reads (see `_parse_lean`).
        self.is_recording = is_recording
        self.requests: list[JsonObject] = []
        self.client_addresses: list[tuple[str, int]] = []  # each request's (host, port): one port, one connection
        self.disconnects = 0
        self.open_requests = 0  # chat.completions requests being answered now
        self.responder: Responder | None = None
        self._queue: deque[Reply] = deque()
        self._call_ids = itertools.count(1)
        self._completion_ids = itertools.count(1)
        self._hold: tuple[int, anyio.Event] | None = None

    def script(self, *replies: Reply) -> None:
        """Queue replies; chat.completions requests consume them in order."""
        self._queue.extend(replies)

    def hold_answers_until_open(self, count: int) -> None:
        """Hold every answer until `count` chat.completions requests are open at once, then answer them and those
        after without waiting: proof that a client had `count` calls in flight together."""
        self._hold = (count, anyio.Event())

    def reset(self) -> None:
        """Forget requests, disconnects, the queue, the responder and any hold (ids keep counting, so they stay
        unique)."""
        self.requests.clear()
        self.client_addresses.clear()
        self._queue.clear()
        self.responder = None
        self.disconnects = 0
        self._hold = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and nothing here speaks WebSocket
        route = (scope["method"], scope["path"])
        if route == ("GET", "/v1/models"):
            await _send_json(send, 200, {"object": "list", "data": [_model_entry()]})
        elif route == ("POST", "/v1/chat/completions"):
            await self._complete(scope, receive, send)
        else:
            await _send_json(send, 404, _error_body(404, f"No route {route[0]} {route[1]}.", "unknown_url"))

    async def _complete(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if not dict(scope["headers"]).get(b"authorization", b"").startswith(b"Bearer "):
            await _send_json(send, 401, _error_body(401, "Missing bearer token.", "invalid_api_key"))
            return
        request = _parse_object(body) if self.is_recording else _parse_lean(body)
        if request is None:
            await _send_json(send, 400, _error_body(400, "The body must be a JSON object.", "invalid_json"))
            return
        if self.is_recording:
            self.requests.append(request)
            client = scope.get("client")
            self.client_addresses.append((str(client[0]), int(client[1])) if client else ("", 0))
        reply = self._next_reply(request)
        self.open_requests += 1
        try:
            await _until_done_or_gone(lambda: self._answer(request, reply, send), receive)
        except _ClientGoneError:
            self.disconnects += 1
        finally:
            self.open_requests -= 1

    def _next_reply(self, request: JsonObject) -> Reply:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply(status=500, text="The fake model's script ran out: script() more replies or set a responder.")

    async def _answer(self, request: JsonObject, reply: Reply, send: Send) -> None:
        if self._hold is not None:
            count, released = self._hold
            if self.open_requests >= count:
                released.set()
            await released.wait()
        if reply.hang:
            await anyio.sleep_forever()
        if reply.delay_s:
            await anyio.sleep(reply.delay_s)
        if reply.status != 200:
            await _send_error_reply(send, reply)
            return
        calls = [self._tool_call(spec) for spec in reply.tool_calls]
        completion_id = f"chatcmpl-{next(self._completion_ids)}"
        model = str(request.get("model") or MODEL)
        if request.get("stream") and reply.raw_stream is not None:
            await _send_raw_stream(send, reply.raw_stream)
        elif request.get("stream"):
            is_usage_wanted = bool((request.get("stream_options") or {}).get("include_usage"))
            chunks = _stream_chunks(completion_id, model, reply, calls, is_usage_wanted)
            await _send_stream(send, chunks, reply.chunk_delay_s, reply.end_delay_s)
        else:
            await _send_json(send, 200, _completion(completion_id, model, reply, calls))

    def _tool_call(self, spec: ToolCallSpec) -> JsonObject:
        arguments = spec.arguments if isinstance(spec.arguments, str) else json.dumps(spec.arguments)
        return {
            "id": spec.id or f"call_{next(self._call_ids)}",
            "type": "function",
            "function": {"name": spec.name, "arguments": arguments},
        }


async def _until_done_or_gone(answer: Callable[[], Awaitable[None]], receive: Receive) -> None:
    """Run `answer`, cancelling it if the client disconnects first.

    uvicorn drops writes to a closed connection silently, so only `http.disconnect` tells that the client left.

    Raises:
        _ClientGoneError: the client went away before `answer` finished.
    """
    is_done = is_gone = False
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal is_gone
            await _until_disconnect(receive)
            # After the last body message uvicorn reports a disconnect too; that one is not the client leaving.
            if not is_done:
                is_gone = True
                tg.cancel_scope.cancel()

        tg.start_soon(watch)
        await answer()
        is_done = True
        tg.cancel_scope.cancel()
    if is_gone:
        raise _ClientGoneError


def _completion(completion_id: str, model: str, reply: Reply, calls: list[JsonObject]) -> JsonObject:
    message: JsonObject = {"role": "assistant", "content": reply.text}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(calls)}],
        "usage": _usage(reply),
    }


def _stream_chunks(
    completion_id: str, model: str, reply: Reply, calls: list[JsonObject], is_usage_wanted: bool
) -> list[JsonObject]:
    """The chunks OpenAI would stream: role, content words, tool calls (header then argument pieces), finish."""
    created = int(time.time())

    def chunk(delta: JsonObject, finish_reason: str | None = None) -> JsonObject:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks.extend(chunk({"content": piece}) for piece in _words(reply.text or ""))
    for index, call in enumerate(calls):
        function = call["function"]
        header = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [header]}))
        chunks.extend(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _halves(function["arguments"])
        )
    chunks.append(chunk({}, _finish_reason(calls)))
    if is_usage_wanted:
        chunks.append({**chunk({}), "choices": [], "usage": _usage(reply)})
    return chunks


async def _send_stream(send: Send, chunks: list[JsonObject], chunk_delay_s: float, end_delay_s: float) -> None:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for index, payload in enumerate(chunks):
        if index and chunk_delay_s:
            await anyio.sleep(chunk_delay_s)
        data = b"data: " + msgspec.json.encode(payload) + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})
    done = b"data: [DONE]\n\n"
    if end_delay_s:
        await send({"type": "http.response.body", "body": done, "more_body": True})
        await anyio.sleep(end_delay_s)
        done = b""
    await send({"type": "http.response.body", "body": done, "more_body": False})


async def _send_raw_stream(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error_reply(send: Send, reply: Reply) -> None:
    message = reply.text or f"Scripted error {reply.status}."
    headers = [] if reply.retry_after is None else [(b"retry-after", f"{reply.retry_after:g}".encode())]
    await _send_json(send, reply.status, _error_body(reply.status, message, "scripted_error"), headers)


def _words(text: str) -> list[str]:
    """Split text the way a model streams it: words, each keeping its trailing spaces."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if current and char != " " and current.endswith(" "):
            pieces.append(current)
            current = ""
        current += char
    return [*pieces, current] if current else pieces


def _halves(arguments: str) -> tuple[str, str]:
    """Two pieces, so a client that does not accumulate argument deltas gets broken JSON and a failing test."""
    middle = len(arguments) // 2
    return arguments[:middle], arguments[middle:]


def _finish_reason(calls: list[JsonObject]) -> str:
    return "tool_calls" if calls else "stop"


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _model_entry() -> JsonObject:
    return {"id": MODEL, "object": "model", "created": 0, "owned_by": "fake-openai"}


def _error_body(status: int, message: str, code: str) -> JsonObject:
    """OpenAI's error shape; `type` follows what OpenAI sends for that status."""
    if status == 429:
        error_type = "requests"
    elif status >= 500:
        error_type = "server_error"
    else:
        error_type = "invalid_request_error"
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _parse_object(body: bytes) -> JsonObject | None:
    try:
        parsed = msgspec.json.decode(body)
    except msgspec.DecodeError:  # also invalid UTF-8
        return None
    return parsed if isinstance(parsed, dict) else None


class _LeanRequest(msgspec.Struct):
    messages: list[msgspec.Raw]
    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


_LEAN_DECODER = msgspec.json.Decoder(_LeanRequest)


def _parse_lean(body: bytes) -> JsonObject | None:
    """The request with only its last message built: the whole body is still checked to be JSON.

    A benchmark turn's requests carry the conversation's history (about 90 KB, 1,000 messages, each). Building
    all of it took the stdlib 0.6 ms a request, on the same two cores as the host under test; this takes 0.07.
    """
    try:
        request = _LEAN_DECODER.decode(body)
        last = msgspec.json.decode(request.messages[-1]) if request.messages else None
    except msgspec.DecodeError:  # also a body that is not an object, or has no list of messages
        return None
    if not isinstance(last, dict):
        return None
    options = {"model": request.model, "stream": request.stream, "stream_options": request.stream_options}
    return {**options, "messages": [last]}


async def _send_json(
    send: Send, status: int, body: JsonObject, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = msgspec.json.encode(body)
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + (headers or [])})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@asynccontextmanager
async def run_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a FakeOpenAI in this event loop on a pre-bound 127.0.0.1 socket; stopped when the block ends."""
    fake = FakeOpenAI()
    with socket.create_server(("127.0.0.1", 0)) as sock:  # bound first: no readiness polling
        # asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP, and this one has proto 0: without it
        # Nagle held each answer's body back until the client's delayed ACK came.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted connections inherit it
        fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        config = uvicorn.Config(
            fake, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield fake
            finally:
                server.should_exit = True


def calculator_responder(request: JsonObject) -> Reply:
    """The benchmark script: call calculator__add, then answer "The answer is <tool result>".

    The addends are 2 and 3, or the integers in the user's message ("add 7 and 3"): distinct numbers per
    request let a benchmark catch answers crossed between concurrent turns.
    """
    last = request["messages"][-1]
    if last.get("role") == "tool":
        return Reply.say(f"The answer is {last['content']}")
    numbers = [int(word) for word in str(last.get("content") or "").split() if word.isdigit()]
    a, b = (*numbers, 3)[:2] if numbers else (2, 3)
    return Reply.call(("calculator__add", {"a": a, "b": b}))


def delayed(responder: Responder, delay_s: float) -> Responder:
    """`responder` as a slow model: each of its answers starts `delay_s` late."""
    return lambda request: replace(responder(request), delay_s=delay_s)


def main() -> None:
    """Serve the calculator script (or `--say`'s text) forever, for benchmarks that run the fake in a process."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_openai")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--say", help="answer every request with this text, instead of the calculator script")
    parser.add_argument("--delay-s", type=float, default=0.0, help="start each answer this many seconds late")
    args = parser.parse_args()
    text: str | None = args.say
    responder = calculator_responder if text is None else (lambda _request: Reply.say(text))
    fake = FakeOpenAI(is_recording=False)
    fake.responder = delayed(responder, args.delay_s) if args.delay_s else responder
    fake.base_url = f"http://{args.host}:{args.port}/v1"
    uvicorn.run(fake, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
