"""The OpenAI provider against the fake OpenAI server: the request body it writes itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.services.llm_provider import (
    AssistantMessage,
    Completion,
    LLMError,
    LLMMessage,
    ModelCall,
    TextDelta,
    ToolCallRequest,
    UserMessage,
)
from backend.services.openai_service import OpenAIProvider
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.specs import chat_settings


async def test_each_request_carries_exactly_its_messages_when_message_objects_come_and_go(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    provider = OpenAIProvider(chat_settings(tmp_path, fake_llm))
    kept: list[LLMMessage] = [
        UserMessage("kept question"),
        AssistantMessage("", (ToolCallRequest("c1", "t__x", '{"n": 1}'),)),
    ]
    try:
        for number in range(50):
            # A new message each time, dropped after the call: its id is free for the next one to reuse.
            call = ModelCall([*kept, UserMessage(f"question {number} é")], [])
            fake_llm.script(Reply.say("ok"))
            events = [event async for event in provider.stream(call)]
            assert isinstance(events[-1], Completion)
            assert fake_llm.requests[-1]["messages"] == [
                {"role": "user", "content": "kept question"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "t__x", "arguments": '{"n": 1}'}}
                    ],
                },
                {"role": "user", "content": f"question {number} é"},
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
