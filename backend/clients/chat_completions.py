"""HTTP client for an OpenAI-compatible Chat Completions endpoint: POST a JSON body, read JSON or an SSE stream.

aiohttp, not the OpenAI SDK over httpx: a model call is the hottest outbound request a turn makes, and its
C-accelerated HTTP parser costs a fraction of the CPU of either. The body arrives already encoded (the provider
keeps its messages' JSON); answers go back as decoded JSON.
Transport and status failures become `ModelConnectionError` and `ModelStatusError`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from typing import Any

import aiohttp
import anyio
import structlog
from multidict import CIMultiDictProxy
from yarl import URL

log = structlog.get_logger(__name__)

MAX_RETRY_AFTER_S = 60.0
MAX_ERROR_TEXT_CHARS = 500
# What a stream may still send after `[DONE]` and be read to keep its connection; more, and closing is cheaper.
MAX_DRAIN_BYTES = 64 * 1024
_DONE = b"[DONE]"


class ModelStatusError(Exception):
    """The server answered with an error status; `message` is its own explanation when it gave one."""

    def __init__(self, status: int, message: str, retry_after_s: float | None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.retry_after_s = status, message, retry_after_s


class ModelConnectionError(Exception):
    """The server could not be reached, or the connection failed or timed out mid-answer."""


class ModelProtocolError(Exception):
    """The server answered with something that is not JSON, or an SSE event whose data is not."""


class ChatCompletionsClient:
    """A keep-alive pool of up to `max_connections` connections to `base_url`; `complete` and `open_stream` post
    to its /chat/completions.

    A call that finds every connection busy waits for one: `queued_calls` and `queued_s_total` count those
    waits, and each is logged as `llm.connection.waited`.
    """

    def __init__(self, base_url: str, api_key: str, timeout_s: float, max_connections: int) -> None:
        self._url = URL(base_url.rstrip("/") + "/chat/completions")
        self.max_connections = max_connections
        self.queued_calls = 0  # calls that found the pool full, counted when they start waiting
        self.queued_s_total = 0.0  # how long they waited, summed when each gets its connection
        self._timeout_s = timeout_s
        # A model may stream for longer than any fixed total; the bound is on each wait for bytes, as it is for
        # the OpenAI SDK, and on the wait for a free connection and its connect (`connect`).
        timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)
        # Calls in flight are counted here, so that one which finds them all busy is seen waiting (aiohttp would
        # queue it silently); the connector's own limit is the same.
        self._free = anyio.Semaphore(max_connections)
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=timeout,
            proxy=proxy_for(self._url),
            connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0),
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def complete(self, body: bytes) -> Any:
        """POST `body` and return the decoded JSON answer.

        Raises:
            ModelStatusError, ModelConnectionError, ModelProtocolError: see the classes.
        """
        await self._take_connection()
        try:
            response = await self._send(body)
            try:
                data = await _read(response)
            finally:
                response.release()
        finally:
            self._free.release()
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ModelProtocolError(f"the answer is not JSON: {data[:200]!r}") from exc

    async def open_stream(self, body: bytes) -> ModelStream:
        """POST `body` for a streamed answer; the stream's events are read from what this returns.

        Raises:
            ModelStatusError, ModelConnectionError: see the classes.
        """
        await self._take_connection()
        try:
            response = await self._send(body)
        except BaseException:
            self._free.release()
            raise
        return ModelStream(response, drain_timeout_s=self._timeout_s, on_done=self._free.release)

    async def _take_connection(self) -> None:
        """Wait for a free connection if all `max_connections` are in use; such a wait is counted and logged."""
        try:
            self._free.acquire_nowait()  # no checkpoint: the usual case costs nothing
            return
        except anyio.WouldBlock:
            pass
        self.queued_calls += 1
        started_s = time.perf_counter()
        await self._free.acquire()
        waited_s = time.perf_counter() - started_s
        self.queued_s_total += waited_s
        log.warning("llm.connection.waited", waited_ms=round(waited_s * 1000, 1), max_connections=self.max_connections)

    async def _send(self, body: bytes) -> aiohttp.ClientResponse:
        try:
            response = await self._session.post(self._url, data=body)
        except aiohttp.ClientError as exc:
            raise ModelConnectionError(_describe(exc)) from exc
        except TimeoutError as exc:
            raise ModelConnectionError("no answer within MCPCHAT_LLM_TIMEOUT_S") from exc
        if response.status < 400:
            return response
        try:
            text = (await _read(response)).decode("utf-8", "replace")
        finally:
            response.release()
        raise ModelStatusError(response.status, _error_message(text), _retry_after_s(response.headers))


class ModelStream:
    """An answer being streamed as server-sent events.

    Read through `[DONE]`, `events()` gives the connection back to the pool; `close` the stream in a `finally`
    whatever happened, so that one left mid-answer is disconnected.
    """

    def __init__(self, response: aiohttp.ClientResponse, drain_timeout_s: float, on_done: Callable[[], None]) -> None:
        self._response = response
        self._drain_timeout_s = drain_timeout_s
        self._on_done: Callable[[], None] | None = on_done  # told once, when the connection is released or closed
        self.is_released = False  # the connection went back to the pool: there is nothing left to close

    def close(self) -> None:
        """Disconnect, so the server sees the client go, unless `events()` already released the connection."""
        if not self.is_released:
            self._response.close()
        self._done()

    def _done(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()

    async def events(self) -> AsyncGenerator[Any, None]:
        """Each event's data, decoded, until `[DONE]` or the end of the stream; then the connection is released.

        Raises:
            ModelConnectionError: the connection failed or went quiet for MCPCHAT_LLM_TIMEOUT_S.
            ModelProtocolError: an event's data is not JSON.
        """
        async with aclosing(_sse_data(self._response)) as payloads:
            async for payload in payloads:
                if payload == _DONE:
                    break
                try:
                    yield json.loads(payload)
                except ValueError as exc:
                    raise ModelProtocolError(f"a stream event is not JSON: {payload[:200]!r}") from exc
        await self._release()

    async def _release(self) -> None:
        """Read the rest of the body so the connection can serve another call, or close it.

        After `[DONE]` there is usually only the last chunk of the chunked encoding, which often arrives in a
        packet of its own: closing before it came would drop a keep-alive connection after every answer.
        """
        content = self._response.content
        if not content.at_eof():
            drained_bytes = 0
            # The answer is complete: a failure now costs only the connection.
            with suppress(aiohttp.ClientError, TimeoutError), anyio.move_on_after(self._drain_timeout_s):
                while not content.at_eof() and drained_bytes <= MAX_DRAIN_BYTES:
                    drained_bytes += len(await content.readany())
        if content.at_eof():
            self._response.release()
            self.is_released = True
        else:
            self._response.close()
        self._done()


def proxy_for(url: URL) -> str | None:
    """The HTTP(S)_PROXY that applies to `url` unless NO_PROXY exempts its host, as other HTTP clients read them.

    Read once: aiohttp's own `trust_env` reads them (and ~/.netrc) again on a worker thread for every request."""
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy is None or urllib.request.proxy_bypass(url.host or ""):
        return None
    return proxy


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except aiohttp.ClientError as exc:
        raise ModelConnectionError(_describe(exc)) from exc
    except TimeoutError as exc:
        raise ModelConnectionError("no answer within MCPCHAT_LLM_TIMEOUT_S") from exc


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """The data of each server-sent event, as the WHATWG spec reads it: `data:` lines joined, a blank line ends it.

    Comments and the other fields (`event:`, `id:`, `retry:`) are skipped: OpenAI-compatible servers send the
    payload in `data` alone, errors included (as a JSON object with an `error` member)."""
    data: list[bytes] = []
    try:
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif not line and data:
                yield b"\n".join(data)
                data = []
        if data:  # a last event without its blank line
            yield b"\n".join(data)
    except aiohttp.ClientError as exc:
        raise ModelConnectionError(_describe(exc)) from exc
    except TimeoutError as exc:
        raise ModelConnectionError("no stream data within MCPCHAT_LLM_TIMEOUT_S") from exc


def _error_message(text: str) -> str:
    """OpenAI's `{"error": {"message": ...}}`, or the start of whatever else the server said."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return text.strip()[:MAX_ERROR_TEXT_CHARS] or "(no message)"


def _retry_after_s(headers: CIMultiDictProxy[str]) -> float | None:
    """The wait the server asked for (retry-after-ms, or Retry-After in seconds), capped; None for an HTTP date."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER_S)
        except ValueError:
            return None
    return None


def _describe(exc: aiohttp.ClientError) -> str:
    return str(exc) or type(exc).__name__
