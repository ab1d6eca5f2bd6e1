"""OpenAI (and any OpenAI-compatible server: vLLM, Ollama, LM Studio) as an `LLMProvider`.

One keep-alive HTTP client (`backend/clients/chat_completions.py`); answers with tool calls streamed, or asked
for whole when nobody watches the turn; transient failures (429, 5xx, connection errors, timeouts) retried by
tenacity with exponential backoff and jitter, honouring Retry-After. The request body is written here, each
history turn's JSON encoded once (see `_EncodedTurns`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import accumulate, repeat
from operator import add, is_, itemgetter, sub
from typing import Any, TypeVar, cast

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from backend.clients.chat_completions import (
    ChatCompletionsClient,
    ModelConnectionError,
    ModelProtocolError,
    ModelStatusError,
    ModelStream,
)
from backend.config import Settings
from backend.services.llm_provider import (
    AssistantMessage,
    Completion,
    HistoryTurn,
    LLMError,
    LLMEvent,
    LLMMessage,
    LLMNotConfiguredError,
    ModelCall,
    SystemMessage,
    TextDelta,
    ToolCallRequest,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from backend.services.weighted_cache import WeightedCache

log = structlog.get_logger(__name__)
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A local OpenAI-compatible server (Ollama, vLLM, LM Studio) usually wants no key; a placeholder is harmless.
NO_KEY_NEEDED = "not-needed"


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ModelConnectionError):
        return True
    return isinstance(exc, ModelStatusError) and (exc.status == 429 or exc.status >= 500)


class _WaitHonouringRetryAfter:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial_s, max=max_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = exc.retry_after_s if isinstance(exc, ModelStatusError) else None
        return asked if asked is not None else self._backoff(state)


class OpenAIProvider:
    def __init__(self, settings: Settings) -> None:
        if not settings.openai_api_key and not settings.openai_base_url:
            raise LLMNotConfiguredError(NOT_CONFIGURED_DETAIL)
        self.model = settings.model
        self._attempts = settings.llm_max_attempts
        self._wait = _WaitHonouringRetryAfter(settings.llm_retry_initial_s, settings.llm_retry_max_s)
        self._client = ChatCompletionsClient(
            base_url=settings.openai_base_url or DEFAULT_BASE_URL,
            api_key=settings.openai_api_key or NO_KEY_NEEDED,
            timeout_s=settings.llm_timeout_s,
            max_connections=settings.llm_max_connections,
        )
        self._whole_head = _dumps({"model": self.model})[:-1]  # '{"model":"..."' : the body goes on from here
        self._streamed_head = _dumps({"model": self.model, "stream": True, "stream_options": {"include_usage": True}})[
            :-1
        ]
        self._history = _EncodedTurns()
        self._tools: tuple[Sequence[ToolDefinition], bytes] | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _with_retries(self, send: Callable[[bytes], Awaitable[T]], body: bytes) -> T:
        """`send(body)`, retried by tenacity on transient failures.

        The first try runs outside tenacity, whose bookkeeping cost 2% of a turn's CPU on every model call; a
        transient failure is handed to it as its first attempt, so the waits and logs are tenacity's own."""
        try:
            return await send(body)
        except (ModelConnectionError, ModelStatusError) as exc:
            if not is_transient(exc):
                raise
            failures = [exc]

        async def attempt() -> T:
            if failures:
                raise failures.pop()
            return await send(body)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        return await retrying(attempt)

    def _body(self, call: ModelCall) -> bytes:
        """The request as JSON; each history turn's JSON and the tools' JSON are reused while the same objects come."""
        head = self._streamed_head if call.is_streamed else self._whole_head
        parts = [head]
        if call.tools:
            parts += (b',"tools":', self._tools_json(call.tools))
        messages = [self._history.encode(call.history)]
        if call.system is not None:
            messages.insert(0, _dumps(to_openai_message(SystemMessage(call.system))))
        messages += (_dumps(to_openai_message(message)) for message in call.messages)
        parts.append(b',"messages":[')
        for part in filter(None, messages):  # comma-separated in the one join: the history is copied once
            parts += (part, b",")
        parts[-1] = b"]}"
        return b"".join(parts)

    def _tools_json(self, tools: Sequence[ToolDefinition]) -> bytes:
        """The tools as JSON, kept while the same tuple comes (immutable, as for the history)."""
        if self._tools is None or self._tools[0] is not tools or not isinstance(tools, tuple):
            encoded = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
            self._tools = (tools, _dumps(encoded))
        return self._tools[1]

    async def stream(self, call: ModelCall) -> AsyncIterator[LLMEvent]:
        body = self._body(call)
        try:
            if not call.is_streamed:  # one JSON answer, so the whole call can be retried
                yield _completion(await self._with_retries(self._client.complete, body))
                return
            # Only opening the stream is retried: once text has reached the user, a retry would repeat it.
            stream: ModelStream = await self._with_retries(self._client.open_stream, body)
        except ModelStatusError as exc:
            raise LLMError(_status_detail(exc, self._attempts)) from exc
        except ModelConnectionError as exc:
            raise LLMError(f"The model could not be reached after {self._attempts} tries: {exc}") from exc
        except (ModelProtocolError, AttributeError, TypeError, KeyError, IndexError) as exc:
            raise LLMError(f"The model sent an answer this client cannot read: {exc}") from exc
        try:
            async for event in _events(stream):
                yield event
        except ModelConnectionError as exc:
            raise LLMError(f"The model's answer broke off: {exc}") from exc
        except (ModelProtocolError, AttributeError, TypeError) as exc:  # not shaped like a chat completion chunk
            raise LLMError(f"The model sent a stream chunk this client cannot read: {exc}") from exc
        finally:
            stream.close()


# A conversation's history reaches the provider as the same turn objects on every call (the chat service keeps
# them rendered), so each turn's JSON is kept too: encoding the history was a third of a turn's CPU, and looking
# it up message by message still a tenth.
# An entry keeps its turn alive, so the bound is the chat service's for its rendered turns (4 MB of text, 1,000 a
# turn): sized larger (8 MB, 300 a turn) it held 3 times the turns the chat service keeps, long dropped there,
# some 17 MB of them after the benchmark's 20,000 turns (tracemalloc).
HISTORY_JSON_CACHE_BYTES = 4_000_000
HISTORY_JSON_ENTRY_BYTES = 1_000  # what an entry costs beside its JSON (its turn's objects), so short turns count
# Histories kept joined, for the later model calls of turns running at once (one kept: under 8 concurrent turns
# their calls interleaved and nearly every one joined its history again, 5% of the CPU, py-spy). Each is up to a
# context's JSON (90 KB at the benchmark's 256 short turns), so not more.
RECENT_HISTORIES = 16
MAX_DROPPED_TURNS = 16  # a history that drops more of the last one's oldest turns is joined afresh


class _EncodedTurns:
    """Each history turn's messages as JSON (comma-separated, no brackets), by the turn object's identity.

    An entry holds its turn, so the id cannot be reused by another object while the entry lives. Lookups peek,
    so the oldest entry goes first (an evicted turn that comes again is simply encoded again). The last
    RECENT_HISTORIES histories asked for are kept joined when they are tuples (immutable, so the same object
    means the same turns): a turn's later model calls pass the same one. A new history that continues the last
    one joined (its oldest turns dropped, new ones added) reuses that one's bytes (`_from_last`)."""

    def __init__(self) -> None:
        self._cache: WeightedCache[int, tuple[HistoryTurn, bytes]] = WeightedCache(
            HISTORY_JSON_CACHE_BYTES, lambda entry: len(entry[1]) + HISTORY_JSON_ENTRY_BYTES
        )
        self._recent: WeightedCache[int, tuple[tuple[HistoryTurn, ...], bytes]] = WeightedCache(
            RECENT_HISTORIES, lambda _entry: 1
        )
        # The last history joined, and where each of its turns starts in the bytes (one more: where they end).
        self._last: tuple[tuple[HistoryTurn, ...], bytes, list[int]] | None = None

    def encode(self, history: Sequence[HistoryTurn]) -> bytes:
        """The history's messages as JSON, comma-separated, without brackets (empty for no messages)."""
        recent = self._recent.get(id(history))
        if recent is not None and recent[0] is history:
            return recent[1]
        if not isinstance(history, tuple):
            return b",".join(filter(None, map(_JSON, self._entries(history))))
        joined = self._from_last(history)
        if joined is None:
            parts = list(map(_JSON, self._entries(history)))
            joined = b",".join(parts)
            if all(parts):  # offsets are kept only where every turn has JSON (any stored turn does)
                self._last = (history, joined, _starts(parts, 0))
        self._recent.put(id(history), (history, joined))
        return joined

    def _from_last(self, history: tuple[HistoryTurn, ...]) -> bytes | None:
        """`history` joined from the last one joined, when it is that one with its oldest turns dropped and new
        ones added (the next turn's context, usually): the kept part is one slice of the last bytes, and only the
        new turns are looked up. None when it is not."""
        if self._last is None or not history:
            return None
        last, joined, starts = self._last
        dropped = next((k for k, turn in enumerate(last[:MAX_DROPPED_TURNS]) if turn is history[0]), None)
        if dropped is None:
            return None
        kept = len(last) - dropped
        if len(history) < kept or not all(map(is_, history[:kept], last[dropped:])):
            return None
        added = list(map(_JSON, self._entries(history[kept:])))
        if not all(added):
            return None
        base = starts[dropped]
        out = b",".join([memoryview(joined)[base:], *added]) if added else joined[base:]
        kept_starts = list(map(sub, starts[dropped:], repeat(base)))  # the last is the end of the kept part
        self._last = (history, out, kept_starts + _starts(added, kept_starts[-1])[1:])
        return out

    def _entries(self, turns: Sequence[HistoryTurn]) -> list[tuple[HistoryTurn, bytes]]:
        """Each turn with its JSON, encoded now for those not kept yet."""
        hits = self._cache.peek_many(map(id, turns))
        if None in hits:
            for index, (turn, hit) in enumerate(zip(turns, hits, strict=True)):
                if hit is None:
                    hits[index] = hit = (turn, b",".join(_dumps(to_openai_message(message)) for message in turn))
                    self._cache.put(id(turn), hit)
        # The cast: no None is left in `hits`, each was filled above.
        return cast("list[tuple[HistoryTurn, bytes]]", hits)


_JSON = itemgetter(1)


def _starts(parts: list[bytes], first: int) -> list[int]:
    """Where each of `parts` starts once they are joined with commas from offset `first`, and where the next would."""
    return list(accumulate(map(add, map(len, parts), repeat(1)), initial=first))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


NOT_CONFIGURED_DETAIL = (
    "Chat needs a language model: set OPENAI_API_KEY (and MCPCHAT_MODEL, default gpt-4o-mini), "
    "or OPENAI_BASE_URL for an OpenAI-compatible server such as Ollama or vLLM."
)


def _status_detail(exc: ModelStatusError, attempts: int) -> str:
    if is_transient(exc):
        return f"The model kept failing ({exc.status}) after {attempts} tries: {exc.message}"
    return f"The model refused the request ({exc.status}): {exc.message}"


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait_s = state.next_action.sleep if state.next_action is not None else None
    log.warning("llm.retry", attempt=state.attempt_number, error=str(exc), wait_s=wait_s)


def _completion(answer: object) -> Completion:
    """A whole (not streamed) chat completion as ours."""
    if not isinstance(answer, dict):
        raise TypeError(f"the answer is not a JSON object: {answer!r:.200}")
    choice = answer["choices"][0]
    message = choice["message"]
    usage = answer.get("usage") or {}
    return Completion(
        text=message.get("content") or "",
        tool_calls=tuple(
            ToolCallRequest(
                id=call.get("id") or f"call_{index}",
                name=call["function"]["name"],
                arguments=call["function"].get("arguments") or "",
            )
            for index, call in enumerate(message.get("tool_calls") or ())
        ),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
    )


async def _events(stream: ModelStream) -> AsyncIterator[LLMEvent]:
    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage: dict[str, Any] = {}
    finish_reason: str | None = None
    async for chunk in stream.events():
        if not isinstance(chunk, dict):
            raise LLMError(f"The model sent a stream chunk that is not a JSON object: {chunk!r:.200}")
        if chunk.get("error"):  # a failure after the stream began, in OpenAI's error shape
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise LLMError(f"The model's answer broke off with an error: {message}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                text.append(content)
                yield TextDelta(content)
            for piece in delta.get("tool_calls") or ():
                call = calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": ""})
                if piece.get("id"):
                    call["id"] = piece["id"]
                function = piece.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
            finish_reason = choice.get("finish_reason") or finish_reason
    tool_calls = tuple(
        ToolCallRequest(id=c["id"] or f"call_{index}", name=c["name"], arguments=c["arguments"])
        for index, c in sorted(calls.items())
    )
    yield Completion(
        text="".join(text),
        tool_calls=tool_calls,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=finish_reason,
    )


def to_openai_message(message: LLMMessage) -> dict[str, Any]:
    """Our message types in Chat Completions form (also the legacy /api/history format)."""
    match message:
        case SystemMessage(content=content) | UserMessage(content=content):
            return {"role": message.role, "content": content}
        case AssistantMessage(content=content, tool_calls=tool_calls):
            out: dict[str, Any] = {"role": "assistant", "content": content or None}
            if tool_calls:
                out["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in tool_calls
                ]
            return out
        case ToolResultMessage(tool_call_id=tool_call_id, content=content):
            return {"role": "tool", "tool_call_id": tool_call_id, "content": content}
    raise TypeError(f"not a message: {message!r}")  # pragma: no cover - the match is exhaustive
