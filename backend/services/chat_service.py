"""The chat loop: user message → model (with every ready server's tools) → tool calls in parallel → model → …

Durability: the user message is stored before the model is called, and every assistant message and tool call
as it completes, so a crash mid-turn loses nothing already said. Isolation: a turn's context is the stored
conversation as it stood when the turn began (finished turns only) plus its own messages, so concurrent turns
in one conversation never see each other's partial work. The context sent to the model is the newest history
that fits the token budget, read from per-turn token counts: a turn's cost does not grow with the history.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio import CancelScope

from backend.auth.principal import Principal
from backend.config import Settings
from backend.db.models import ToolCallStatus, TurnStatus, new_id
from backend.db.records import MessageRecord, ToolCallRecord, TurnRecord
from backend.db.repositories import (
    ConversationStore,
    NewToolCall,
    StartedTurn,
    ToolCallOutcome,
    assistant_message,
    context_turn,
)
from backend.errors import AppError, PayloadTooLargeError, TooManyRunningTurnsError
from backend.mcp.models import Progress, ToolInfo
from backend.services import tool_arguments
from backend.services.history_cache import HistoryCache
from backend.services.llm_provider import (
    AssistantMessage,
    Completion,
    HistoryTurn,
    LLMError,
    LLMMessage,
    LLMNotConfiguredError,
    LLMProvider,
    ModelCall,
    TextDelta,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from backend.services.mcp_service import McpService
from backend.services.openai_service import NOT_CONFIGURED_DETAIL
from backend.services.tokens import TokenCounter
from backend.services.tool_results import error_for_model, stored_result, text_for_model
from backend.services.usage_limits import UsageLimits

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TurnEvent:
    """Something a watcher of the turn (an SSE stream) is told about, as it happens."""

    type: str
    data: dict[str, Any]


Emit = Callable[[TurnEvent], Awaitable[None]]


async def _ignore(_event: TurnEvent) -> None:
    return None


@dataclass(frozen=True)
class TurnOutcome:
    turn: TurnRecord
    status: TurnStatus
    user_message: MessageRecord
    final_message: MessageRecord | None
    tool_calls: list[ToolCallRecord]


class MessageTooLongError(PayloadTooLargeError):
    slug, title = "message-too-long", "Message too long"


class RunningTurns:
    """The cancel scopes of the turns running now, by conversation, for POST .../cancel; and the places each user's
    running turns hold, for MCPCHAT_MAX_RUNNING_TURNS_PER_USER."""

    def __init__(self) -> None:
        self._scopes: dict[str, set[CancelScope]] = defaultdict(set)
        self._places: dict[str, int] = {}  # by user id; no entry: none

    @contextmanager
    def place(self, user_id: str, limit: int) -> Iterator[None]:
        """Hold one of the user's `limit` places for the block: a turn that ends in any way frees its place.

        Raises:
            TooManyRunningTurnsError: the user's turns hold every place.
        """
        held = self._places.get(user_id, 0)
        if held >= limit:  # checked and taken with no await in between: exact under any concurrency
            raise TooManyRunningTurnsError(
                f"You have {held} turns running, the most one user may (MCPCHAT_MAX_RUNNING_TURNS_PER_USER); "
                "wait for one to end, or cancel one, then send this message again."
            )
        self._places[user_id] = held + 1
        try:
            yield
        finally:
            left = self._places[user_id] - 1
            if left:
                self._places[user_id] = left
            else:
                del self._places[user_id]

    @contextmanager
    def track(self, conversation_id: str) -> Iterator[CancelScope]:
        scope = CancelScope()
        self._scopes[conversation_id].add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes[conversation_id].discard(scope)
            if not self._scopes[conversation_id]:
                del self._scopes[conversation_id]

    def cancel(self, conversation_id: str) -> int:
        scopes = self._scopes.get(conversation_id, set())
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    def count(self, conversation_id: str | None = None) -> int:
        if conversation_id is not None:
            return len(self._scopes.get(conversation_id, ()))
        return sum(len(scopes) for scopes in self._scopes.values())


@dataclass
class _TurnState:
    turn: TurnRecord
    user_message: MessageRecord
    tokens: int
    is_streamed: bool
    seq: int = 1
    streaming_id: str | None = None  # the assistant message being streamed, not stored yet
    streaming_text: list[str] = field(default_factory=list)
    final_message: MessageRecord | None = None
    tool_call_messages: list[MessageRecord] = field(default_factory=list)  # as stored, their tool calls included
    settled_as: TurnStatus | None = None  # set once the turn's end is stored
    prompt_tokens: int = 0  # as the provider counted them, over the turn's model calls (where it sent them)
    completion_tokens: int = 0

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """The turn's tool calls as stored, results included, in the order they were asked for."""
        return [call for message in self.tool_call_messages for call in message.tool_calls]


class ChatService:
    def __init__(
        self,
        store: ConversationStore,
        mcp: McpService,
        provider: LLMProvider | None,
        settings: Settings,
        tokens: TokenCounter,
        usage: UsageLimits,
    ) -> None:
        self._store, self._mcp, self._provider = store, mcp, provider
        self._settings, self._tokens, self._usage = settings, tokens, usage
        self._max_running_turns = settings.running_turns_limit
        self.running = RunningTurns()
        self._history = HistoryCache()
        self._tools: tuple[list[ToolInfo], tuple[ToolDefinition, ...]] = ([], ())

    def check_ready(self, content: str) -> LLMProvider:
        """Refuse a message before anything is stored or sent.

        Raises:
            MessageTooLongError: over MCPCHAT_MAX_MESSAGE_CHARS.
            LLMNotConfiguredError: no model is configured.
        """
        limit = self._settings.max_message_chars
        if len(content) > limit:
            raise MessageTooLongError(
                f"The message is {len(content)} characters long; MCPCHAT_MAX_MESSAGE_CHARS allows {limit}."
            )
        if self._provider is None:
            raise LLMNotConfiguredError(NOT_CONFIGURED_DETAIL)
        return self._provider

    async def run_turn(
        self, user: Principal, conversation_id: str, content: str, emit: Emit | None = None
    ) -> TurnOutcome:
        """Answer one user message, storing everything as it happens. `emit` watches the turn (SSE); without
        a watcher the model's answers are asked for whole, not streamed.

        Raises:
            MessageTooLongError, LLMNotConfiguredError, RateLimitedError, RateLimitsUnavailableError,
                TooManyRunningTurnsError: before anything is stored or sent.
            ConversationNotFoundError: the user has no such conversation.
            LLMError: the model failed; the user message and the turn's work so far are stored.
        """
        return await self._run_turn(user, conversation_id, content, emit)

    async def run_legacy_turn(self, user: Principal, content: str) -> TurnOutcome:
        """`run_turn` in the user's legacy API conversation (found, or created, in the turn's first transaction).

        Raises:
            MessageTooLongError, LLMNotConfiguredError, RateLimitedError, TooManyRunningTurnsError, LLMError: as
                `run_turn`.
        """
        return await self._run_turn(user, None, content, None)

    async def cancel_turns(self, user_id: str, conversation_id: str) -> int:
        """Cancel every running turn of one of the user's conversations; how many there were.

        Raises:
            ConversationNotFoundError: the user has no such conversation.
        """
        await self._store.get(user_id, conversation_id)
        return self.running.cancel(conversation_id)

    async def _run_turn(
        self, user: Principal, conversation_id: str | None, content: str, emit: Emit | None
    ) -> TurnOutcome:
        provider = self.check_ready(content)
        await self._usage.count_chat_turn(user)
        if self._max_running_turns is None:
            return await self._start_and_run(provider, user.user_id, conversation_id, content, emit)
        with self.running.place(user.user_id, self._max_running_turns):
            return await self._start_and_run(provider, user.user_id, conversation_id, content, emit)

    async def _start_and_run(
        self, provider: LLMProvider, user_id: str, conversation_id: str | None, content: str, emit: Emit | None
    ) -> TurnOutcome:
        tokens = self._tokens.message(content)
        # Shielded: a cancel that lands while the turn's row is being written (a client gone, a commit in flight
        # on PostgreSQL) must not leave a stored turn that nothing settles. It is delivered at the next await,
        # inside the `try` below.
        with CancelScope(shield=True):
            started = await self._store.start_turn(
                user_id, conversation_id, content, self._context_budget(tokens), known=self._history.known()
            )
        turn = started.turn
        state = _TurnState(turn=turn, user_message=started.user_message, tokens=tokens, is_streamed=emit is not None)
        status = TurnStatus.FAILED
        started_s = time.perf_counter()
        log.info("chat.turn.started", conversation_id=turn.conversation_id, turn_id=turn.id)
        try:
            with self.running.track(turn.conversation_id) as scope:
                if emit is not None:
                    await emit(TurnEvent("message.created", message_payload(started.user_message)))
                await self._loop(provider, state, started, emit or _ignore)
                status = TurnStatus.COMPLETED
            if scope.cancelled_caught:
                status = TurnStatus.CANCELLED
        except anyio.get_cancelled_exc_class():
            status = TurnStatus.CANCELLED
            raise
        finally:
            if state.settled_as is None:  # the answer stored the turn's end unless it failed or was cancelled
                with CancelScope(shield=True):
                    await self._settle(state, status)
            log.info(
                "chat.turn.finished",
                conversation_id=turn.conversation_id,
                turn_id=turn.id,
                status=(state.settled_as or status).value,
                duration_ms=round((time.perf_counter() - started_s) * 1000, 2),
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
            )
        # Built from what was stored, as it was stored: no read-back.
        return TurnOutcome(
            turn=turn,
            status=state.settled_as or status,
            user_message=started.user_message,
            final_message=state.final_message,
            tool_calls=state.tool_calls,
        )

    async def _settle(self, state: _TurnState, status: TurnStatus) -> None:
        """Store what a cancelled or failed turn had produced, and the turn's end (unless the answer did)."""
        if state.settled_as is not None:
            return
        partial: MessageRecord | None = None
        if state.streaming_id is not None and state.streaming_text:
            text = "".join(state.streaming_text)
            partial = assistant_message(state.turn, state.streaming_id, state.seq, text, status=status.value)
            state.tokens += self._tokens.message(text)
        await self._store.finish_turn(state.turn, status, state.tokens, partial, state.tool_calls)
        state.settled_as = status

    async def _loop(self, provider: LLMProvider, state: _TurnState, started: StartedTurn, emit: Emit) -> None:
        history = await self._history_of(started)
        messages: list[LLMMessage] = [UserMessage(state.user_message.content)]
        rounds = self._settings.max_tool_rounds
        for _ in range(rounds):
            call = ModelCall(
                messages,
                self._tool_definitions(),
                state.is_streamed,
                history=history,
                system=self._settings.system_prompt or None,
            )
            completion = await self._model_call(provider, call, state, emit)
            if not completion.tool_calls:
                await self._store_answer(state, completion.text, emit)
                return
            messages.append(AssistantMessage(completion.text, completion.tool_calls))
            messages.extend(await self._run_tool_calls(state, completion, emit))
        await self._store_answer(
            state,
            f"I stopped after {rounds} rounds of tool calls without reaching an answer "
            f"(MCPCHAT_MAX_TOOL_ROUNDS={rounds}). Ask again, perhaps more narrowly, to continue.",
            emit,
        )

    def _context_budget(self, message_tokens: int) -> int:
        """Tokens left for history once the system prompt and the user's message are counted."""
        system = self._settings.system_prompt
        budget = self._settings.context_max_tokens - message_tokens - (self._tokens.message(system) if system else 0)
        return max(budget, 0)

    async def _history_of(self, started: StartedTurn) -> list[HistoryTurn]:
        """The turn's context as model messages, oldest first."""
        history = self._history.history(started.context_ids, started.context_rows)
        if history is None:  # a concurrent turn pushed one out of the cache since the rows were read
            rows = await self._store.context_turns(started.context_ids)
            history = self._history.history(started.context_ids, rows) or []
        return history

    def _tool_definitions(self) -> tuple[ToolDefinition, ...]:
        """The ready tools for the model, built again only when the tools change."""
        tools = self._mcp.tools()
        known, definitions = self._tools
        if len(tools) != len(known) or any(a is not b for a, b in zip(tools, known, strict=True)):
            definitions = tuple(
                ToolDefinition(
                    name=tool.name, description=tool.description or tool.title or "", parameters=tool.input_schema
                )
                for tool in tools
            )
            self._tools = (tools, definitions)
        return definitions

    async def _model_call(self, provider: LLMProvider, call: ModelCall, state: _TurnState, emit: Emit) -> Completion:
        state.streaming_id, state.streaming_text = new_id(), []
        # Closed here, inside the turn's cancel scope: the answer's connection is released (or dropped) now, not
        # whenever the garbage collector finalizes the generator.
        async with aclosing(provider.stream(call)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    state.streaming_text.append(event.text)
                    await emit(TurnEvent("message.delta", {"message_id": state.streaming_id, "text": event.text}))
                else:
                    state.prompt_tokens += event.prompt_tokens or 0
                    state.completion_tokens += event.completion_tokens or 0
                    return event
        raise LLMError("The model's answer ended without completing.")

    async def _store_answer(self, state: _TurnState, text: str, emit: Emit) -> None:
        """Store the final answer and the turn's end in one transaction."""
        message = assistant_message(state.turn, state.streaming_id or new_id(), state.seq, text)
        state.tokens += self._tokens.message(text)
        with CancelScope(shield=True):  # stored whole or not at all, even if the turn is cancelled now
            await self._store.finish_turn(state.turn, TurnStatus.COMPLETED, state.tokens, message, state.tool_calls)
        state.streaming_id, state.seq, state.final_message = None, state.seq + 1, message
        state.settled_as = TurnStatus.COMPLETED
        # Rendered now from what was just stored, as it would be read back: the next turn need not read it.
        self._history.add(state.turn.id, context_turn([state.user_message, *state.tool_call_messages, message]))
        await emit(TurnEvent("message.completed", {"message_id": message.id, "content": text}))

    async def _run_tool_calls(self, state: _TurnState, completion: Completion, emit: Emit) -> list[ToolResultMessage]:
        message_id = state.streaming_id or new_id()
        calls = [
            NewToolCall(
                id=new_id(),
                call_id=request.id,
                name=request.name,
                server=self._server_of(request.name),
                arguments_json=request.arguments,
            )
            for request in completion.tool_calls
        ]
        stored = await self._store.add_assistant_message(state.turn, message_id, state.seq, completion.text, calls)
        state.tool_call_messages.append(stored)
        state.streaming_id, state.seq = None, state.seq + 1
        state.tokens += self._tokens.message(completion.text, *(c.name + c.arguments_json for c in calls))
        await emit(TurnEvent("message.completed", {"message_id": message_id, "content": completion.text}))
        watch = emit if state.is_streamed else None
        if len(calls) == 1:
            done = [await self._run_tool_call(calls[0], stored.tool_calls[0], message_id, watch)]
        else:
            results: list[ToolResultMessage | None] = [None] * len(calls)

            async def run(index: int, call: NewToolCall, row: ToolCallRecord) -> None:
                results[index] = await self._run_tool_call(call, row, message_id, watch)

            async with anyio.create_task_group() as tg:  # the model asked for them together: run them together
                for index, (call, row) in enumerate(zip(calls, stored.tool_calls, strict=True)):
                    tg.start_soon(run, index, call, row)
            done = [result for result in results if result is not None]
        state.tokens += sum(self._tokens.message(result.content) for result in done)
        return done

    def _server_of(self, name: str) -> str | None:
        try:
            return self._mcp.tool(name).server
        except AppError:
            return None

    async def _run_tool_call(
        self, call: NewToolCall, row: ToolCallRecord, message_id: str, emit: Emit | None
    ) -> ToolResultMessage:
        """Run one tool call and store its result; `emit` (None: nobody watches) hears its start, progress, end."""
        if emit is None:
            outcome = await self._execute(call, None)
            await self._store.finish_tool_call(row, outcome)
            return ToolResultMessage(tool_call_id=call.call_id, content=outcome.result_text)
        await emit(
            TurnEvent(
                "tool_call.started",
                {
                    "tool_call_id": call.id,
                    "message_id": message_id,
                    "name": call.name,
                    "server": call.server,
                    "arguments": tool_arguments.for_display(call.arguments_json),
                },
            )
        )
        is_running = True

        async def on_progress(progress: Progress) -> None:
            if is_running:  # progress may arrive after the result; the watcher has moved on by then
                payload = {"tool_call_id": call.id, **progress.model_dump()}
                await emit(TurnEvent("tool_call.progress", payload))

        outcome = await self._execute(call, on_progress)
        is_running = False
        await self._store.finish_tool_call(row, outcome)
        await emit(
            TurnEvent(
                "tool_call.completed",
                {
                    "tool_call_id": call.id,
                    "result": outcome.result,
                    "result_text": outcome.result_text,
                    "is_error": outcome.is_error,
                    "duration_ms": outcome.duration_ms,
                },
            )
        )
        return ToolResultMessage(tool_call_id=call.call_id, content=outcome.result_text)

    async def _execute(
        self, call: NewToolCall, on_progress: Callable[[Progress], Awaitable[None]] | None
    ) -> ToolCallOutcome:
        """Run one tool call; every failure becomes an error result the model can read and act on."""
        limit = self._settings.tool_result_max_bytes
        started_s = time.perf_counter()

        def failed(detail: str) -> ToolCallOutcome:
            duration_ms = round((time.perf_counter() - started_s) * 1000, 3)
            return ToolCallOutcome(None, error_for_model(detail, limit), True, ToolCallStatus.COMPLETED, duration_ms)

        try:
            arguments = tool_arguments.parse(call.arguments_json)
        except json.JSONDecodeError as exc:
            return failed(
                f"the arguments are not valid JSON ({exc.msg} at character {exc.pos}); "
                "send one JSON object that matches the tool's input schema."
            )
        if not isinstance(arguments, dict):
            return failed("the arguments must be a JSON object that matches the tool's input schema.")
        try:
            result = await self._mcp.call_tool(call.name, arguments, on_progress)
        except AppError as exc:
            return failed(exc.detail)
        text = text_for_model(result.content, result.structured_content, result.is_error, limit)
        stored = stored_result(result.content, result.structured_content, self._settings.tool_result_store_max_bytes)
        return ToolCallOutcome(stored, text, result.is_error, ToolCallStatus.COMPLETED, result.duration_ms)


def message_payload(message: MessageRecord) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }
