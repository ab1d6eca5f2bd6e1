"""The LLM provider interface the chat loop talks to; one file per provider implements it.

Messages and events are our own types, so a provider with another wire format (Anthropic, Gemini) is a new
file that maps them, and the loop does not change.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from backend.errors import AppError


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str  # as the model wrote it: JSON text, possibly invalid


@dataclass(frozen=True)
class SystemMessage:
    content: str
    role: Literal["system"] = "system"


@dataclass(frozen=True)
class UserMessage:
    content: str
    role: Literal["user"] = "user"


@dataclass(frozen=True)
class AssistantMessage:
    content: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True)
class ToolResultMessage:
    tool_call_id: str
    content: str
    role: Literal["tool"] = "tool"


LLMMessage = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Completion:
    """The last event of a model call: the whole answer, and the tokens the provider counted (where it sent them)."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


LLMEvent = TextDelta | Completion


@dataclass(frozen=True, eq=False)
class HistoryTurn:
    """A finished turn's messages, in order, as every later model call whose context holds the turn sends them.

    Finished turns never change, so a provider may keep its wire form of one in `encoded` (by format name): a long
    conversation's history is then not encoded again on every call."""

    id: str
    messages: tuple[LLMMessage, ...]
    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ModelCall:
    """One request to the model: `system`, then the `history` turns, then this turn's `messages`."""

    messages: Sequence[LLMMessage]
    tools: Sequence[ToolDefinition] = ()
    # False: nobody watches the text arrive, so the provider may ask for the whole answer at once (no
    # TextDelta then; the Completion alone).
    is_streamed: bool = True
    history: Sequence[HistoryTurn] = ()
    system: str | None = None


class LLMProvider(Protocol):
    """Streams one model call: `TextDelta`s as text arrives, then exactly one `Completion`."""

    model: str

    def stream(self, call: ModelCall) -> AsyncGenerator[LLMEvent, None]: ...

    async def aclose(self) -> None: ...


class LLMNotConfiguredError(AppError):
    status, slug, title = 503, "llm-not-configured", "No language model configured"


class LLMError(AppError):
    """The provider failed (after retries, for transient failures)."""

    status, slug, title = 502, "llm-error", "Language model error"
