"""OpenAI (and any OpenAI-compatible server: vLLM, Ollama, LM Studio) as an `LLMProvider`.

One keep-alive HTTP client (`backend/clients/chat_completions.py`); answers with tool calls streamed, or asked
for whole when nobody watches the turn; transient failures (429, 5xx, connection errors, timeouts) retried by
tenacity with exponential backoff and jitter, honouring Retry-After. The request body is written here, each
history turn's JSON encoded once and kept on the turn (`HistoryTurn.encoded`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from itertools import repeat
from operator import attrgetter
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

log = structlog.get_logger(__name__)
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A local OpenAI-compatible server (Ollama, vLLM, LM Studio) usually wants no key; a placeholder is harmless.
NO_KEY_NEEDED = "not-needed"
WIRE_FORMAT = "openai-chat"  # the name this provider's JSON is kept under in `HistoryTurn.encoded`


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
        self._tools: tuple[Sequence[ToolDefinition], bytes] | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _with_retries(self, send: Callable[[bytes], Awaitable[T]], body: bytes) -> T:
        """`send(body)`, retried by tenacity on transient failures.

        The first try runs outside tenacity, so a call that succeeds at once (nearly all) pays nothing for its
        bookkeeping; a transient failure is handed to it as its first attempt, so the waits and logs are its own."""
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
        """The request as JSON, from the kept JSON of the tools and of each history turn."""
        messages: list[bytes] = []
        if call.system is not None:
            messages.append(_dumps(to_openai_message(SystemMessage(call.system))))
        messages.extend(_history_json(call.history))
        messages.extend(_dumps(to_openai_message(message)) for message in call.messages)
        parts = [self._streamed_head if call.is_streamed else self._whole_head]
        if call.tools:
            parts += (b',"tools":', self._tools_json(call.tools))
        parts += (b',"messages":[', b",".join(filter(None, messages)), b"]}")
        return b"".join(parts)

    def _tools_json(self, tools: Sequence[ToolDefinition]) -> bytes:
        """The tools as JSON, kept while the same tools come (they change only when a server's list does)."""
        if self._tools is None or self._tools[0] != tools:
            encoded = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
            self._tools = (tuple(tools), _dumps(encoded))
        return self._tools[1]

    async def stream(self, call: ModelCall) -> AsyncGenerator[LLMEvent, None]:
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
        answer = _StreamedAnswer()
        try:
            async with aclosing(stream.events()) as chunks:
                async for chunk in chunks:
                    for text in answer.add(chunk):
                        yield TextDelta(text)
            yield answer.completion()
        except ModelConnectionError as exc:
            raise LLMError(f"The model's answer broke off: {exc}") from exc
        except (ModelProtocolError, AttributeError, TypeError) as exc:  # not shaped like a chat completion chunk
            raise LLMError(f"The model sent a stream chunk this client cannot read: {exc}") from exc
        finally:
            stream.close()


def _history_json(history: Sequence[HistoryTurn]) -> list[bytes]:
    """Each history turn's messages as JSON, comma-separated without brackets (empty for none), encoded once and
    kept on the turn; looked up with C-level maps, as a long history has hundreds of turns on every call."""
    parts: list[bytes | None] = list(map(dict.get, map(_ENCODED, history), repeat(WIRE_FORMAT)))
    if None in parts:
        for index, turn in enumerate(history):
            if parts[index] is None:
                parts[index] = turn.encoded[WIRE_FORMAT] = b",".join(
                    _dumps(to_openai_message(message)) for message in turn.messages
                )
    return cast("list[bytes]", parts)  # every None was filled above


_ENCODED = attrgetter("encoded")


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
    )


class _StreamedAnswer:
    """A streamed answer put together from its chunks: text, tool calls (sent in pieces), usage."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, dict[str, str]] = {}
        self._usage: dict[str, Any] = {}

    def add(self, chunk: object) -> list[str]:
        """Take one chunk; the text it adds, in pieces.

        Raises:
            LLMError: the chunk is an error, or not a JSON object.
        """
        if not isinstance(chunk, dict):
            raise LLMError(f"The model sent a stream chunk that is not a JSON object: {chunk!r:.200}")
        if chunk.get("error"):  # a failure after the stream began, in OpenAI's error shape
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise LLMError(f"The model's answer broke off with an error: {message}")
        self._usage = chunk.get("usage") or self._usage
        added: list[str] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                added.append(content)
            for piece in delta.get("tool_calls") or ():
                call = self._calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": ""})
                if piece.get("id"):
                    call["id"] = piece["id"]
                function = piece.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
        self._text.extend(added)
        return added

    def completion(self) -> Completion:
        tool_calls = tuple(
            ToolCallRequest(id=c["id"] or f"call_{index}", name=c["name"], arguments=c["arguments"])
            for index, c in sorted(self._calls.items())
        )
        return Completion(
            text="".join(self._text),
            tool_calls=tool_calls,
            prompt_tokens=self._usage.get("prompt_tokens"),
            completion_tokens=self._usage.get("completion_tokens"),
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
