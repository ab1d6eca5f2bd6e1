"""The OpenAI provider against the fake OpenAI server: the request body it writes itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.db.models import new_id
from backend.services.llm_provider import (
    AssistantMessage,
    Completion,
    HistoryTurn,
    LLMError,
    LLMMessage,
    ModelCall,
    TextDelta,
    ToolCallRequest,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from backend.services.openai_service import OpenAIProvider, to_openai_message
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.specs import chat_settings


def turn(*messages: LLMMessage) -> HistoryTurn:
    return HistoryTurn(new_id(), messages)


async def test_each_request_carries_exactly_its_history_when_turn_objects_come_and_go(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    provider = OpenAIProvider(chat_settings(tmp_path, fake_llm))
    kept = turn(
        UserMessage("kept question"),
        AssistantMessage("", (ToolCallRequest("c1", "t__x", '{"n": 1}'),)),
        ToolResultMessage("c1", "2"),
    )
    tools = (ToolDefinition("t__x", "x it", {"type": "object"}),)
    try:
        for number in range(50):
            # A new turn each time, dropped after the call.
            dropped = turn(UserMessage(f"question {number} é"), AssistantMessage(f"answer {number}"))
            call = ModelCall([UserMessage("now")], tools, history=[kept, dropped, turn()], system="Be brief.")
            fake_llm.script(Reply.say("ok"))
            events = [event async for event in provider.stream(call)]
            assert isinstance(events[-1], Completion)
            request = fake_llm.requests[-1]
            assert request["messages"] == [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "kept question"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "t__x", "arguments": '{"n": 1}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "2"},
                {"role": "user", "content": f"question {number} é"},
                {"role": "assistant", "content": f"answer {number}"},
                {"role": "user", "content": "now"},
            ]
            assert request["tools"] == [
                {
                    "type": "function",
                    "function": {"name": "t__x", "description": "x it", "parameters": {"type": "object"}},
                }
            ]
    finally:
        await provider.aclose()


async def test_an_error_event_mid_stream_is_an_llm_error_naming_the_models_message(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    provider = OpenAIProvider(chat_settings(tmp_path, fake_llm))
    fake_llm.script(
        Reply(
            raw_stream=b'data: {"choices": [{"index": 0, "delta": {"content": "Hal"}}]}\n\n'
            b'data: {"error": {"message": "the model is overloaded", "type": "server_error"}}\n\n'
        )
    )
    events: list[object] = []
    try:
        with pytest.raises(LLMError, match="the model is overloaded"):
            async for event in provider.stream(ModelCall([UserMessage("hi")], [])):
                events.append(event)
    finally:
        await provider.aclose()
    assert events == [TextDelta("Hal")]


async def test_a_turns_later_calls_reuse_its_history_and_still_carry_their_own_messages(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    provider = OpenAIProvider(chat_settings(tmp_path, fake_llm))
    history = [turn(UserMessage("before"), AssistantMessage("earlier answer"))]
    try:
        rounds: list[list[LLMMessage]] = [[UserMessage("q")], [UserMessage("q"), AssistantMessage("partial")]]
        for messages in rounds:
            fake_llm.script(Reply.say("ok"))
            _ = [event async for event in provider.stream(ModelCall(messages, history=history))]
        empty_history = ModelCall([UserMessage("alone")], history=[turn()])
        fake_llm.script(Reply.say("ok"))
        _ = [event async for event in provider.stream(empty_history)]
    finally:
        await provider.aclose()
    before = [{"role": "user", "content": "before"}, {"role": "assistant", "content": "earlier answer"}]
    assert [request["messages"] for request in fake_llm.requests] == [
        [*before, {"role": "user", "content": "q"}],
        [*before, {"role": "user", "content": "q"}, {"role": "assistant", "content": "partial"}],
        [{"role": "user", "content": "alone"}],
    ]


async def test_each_request_carries_its_window_as_windows_slide_grow_and_jump(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    provider = OpenAIProvider(chat_settings(tmp_path, fake_llm))
    pool: list[HistoryTurn] = [
        turn(
            UserMessage(f"q{i}"),
            AssistantMessage("", (ToolCallRequest(f"c{i}", "t__x", "{}"),)),
            ToolResultMessage(f"c{i}", f"r{i}"),
        )
        if i % 3 == 0
        else turn(UserMessage(f"q{i}"), AssistantMessage(f"a{i}"))
        for i in range(60)
    ]
    # (first, last) turn of each request's window, in order: growing, sliding by one and by several, the same
    # turns again, a jump to unrelated turns, shrinking, and sliding past the last window's end.
    windows = [(0, 3), (0, 4), (1, 5), (4, 9), (4, 9), (30, 40), (30, 35), (33, 50), (49, 52), (0, 1)]
    try:
        for first, last in windows:
            fake_llm.script(Reply.say("ok"))
            call = ModelCall([UserMessage("now")], history=tuple(pool[first:last]))
            _ = [event async for event in provider.stream(call)]
    finally:
        await provider.aclose()
    expected = [
        [to_openai_message(message) for history_turn in pool[first:last] for message in history_turn.messages]
        + [{"role": "user", "content": "now"}]
        for first, last in windows
    ]
    assert [request["messages"] for request in fake_llm.requests] == expected
