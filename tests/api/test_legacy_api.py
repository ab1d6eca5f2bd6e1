"""The legacy API keeps its contract: /api/chat, /api/history, /api/clear, /api/tools, /api/servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.specs import calculator_spec, chat_settings, make_settings


async def test_chat_runs_a_tool_round_trip_when_the_model_calls_the_calculator(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.call(("calculator__add", {"a": 2, "b": 3})), Reply.say("The answer is 5."))
    response = await chat_app.http.post("/api/chat", json={"message": "What is 2 + 3?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == "The answer is 5."
    [call] = body["tool_calls"]
    assert (call["name"], call["args"], call["result"]) == ("calculator__add", {"a": 2, "b": 3}, "2 + 3 = 5")
    first, second = fake_llm.requests
    assert "calculator__add" in {tool["function"]["name"] for tool in first["tools"]}
    assert first["messages"][-1] == {"role": "user", "content": "What is 2 + 3?"}
    tool_message = second["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": call["id"], "content": "2 + 3 = 5"}


async def test_the_next_turn_replays_a_failed_tool_turn_exactly_as_it_was_stored(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        Reply.call(("calculator__add", '{"a": 2,'), ("calculator__divide", {"a": 1, "b": 0})),
        Reply.say("Both failed."),
        Reply.say("ok"),
    )
    await chat_app.http.post("/api/chat", json={"message": "broken calls"})
    await chat_app.http.post("/api/chat", json={"message": "next"})
    stored = (await chat_app.http.get("/api/history")).json()["history"]
    # The second turn's context came from the service's memory of the first; the stored history is read
    # from the database. They are the same messages.
    assert fake_llm.requests[-1]["messages"][:-1] == stored[:5]
    assert [m["role"] for m in stored[:5]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert all(m["content"].startswith("[tool error]") for m in stored[2:4])


async def test_chat_answers_with_empty_tool_calls_when_no_tool_is_used(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.say("Hello!"))
    body = (await chat_app.http.post("/api/chat", json={"message": "hi"})).json()
    assert body == {"response": "Hello!", "tool_calls": []}


async def test_history_is_replayable_openai_messages_and_clear_starts_afresh(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.call(("calculator__multiply", {"a": 6, "b": 7})), Reply.say("42"), Reply.say("again"))
    await chat_app.http.post("/api/chat", json={"message": "6 times 7?"})
    history = (await chat_app.http.get("/api/history")).json()["history"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    for message in history:
        assert set(message) <= {"role", "content", "tool_calls", "tool_call_id"}
    tool_call = history[1]["tool_calls"][0]
    assert json.loads(tool_call["function"]["arguments"]) == {"a": 6, "b": 7}
    assert history[2]["tool_call_id"] == tool_call["id"]
    # The next turn sends that history to the model.
    await chat_app.http.post("/api/chat", json={"message": "and again?"})
    assert fake_llm.requests[-1]["messages"][:4] == history
    cleared = await chat_app.http.post("/api/clear")
    assert cleared.json() == {"history": []}
    assert (await chat_app.http.get("/api/history")).json() == {"history": []}
    kinds = [c["kind"] for c in (await chat_app.http.get("/v1/conversations")).json()["items"]]
    assert kinds.count("legacy") == 2  # the old history stays stored


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        ('{"nothing": 1}', {"content-type": "application/json"}, 400),
        ('{"message": ""}', {"content-type": "application/json"}, 400),
        ('{"message": 42}', {"content-type": "application/json"}, 400),
        ('{"message": "hi"', {"content-type": "application/json"}, 400),
        ('["message"]', {"content-type": "application/json"}, 400),
        ("message=hi", {"content-type": "application/x-www-form-urlencoded"}, 415),
        ('{"message": "hi"}', {"content-type": "text/plain"}, 415),
    ],
)
async def test_chat_refuses_bad_input_without_calling_the_model(
    chat_app: RunningApp, fake_llm: FakeOpenAI, content: str, headers: dict[str, str], status: int
) -> None:
    response = await chat_app.http.post("/api/chat", content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["error"] == body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert fake_llm.requests == []


async def test_chat_answers_413_when_message_is_too_long(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with run_app(chat_settings(tmp_path, fake_llm, max_message_chars=10), [calculator_spec()]) as app:
        response = await app.http.post("/api/chat", json={"message": "x" * 11})
        assert response.status_code == 413
        assert "MCPCHAT_MAX_MESSAGE_CHARS" in response.json()["error"]
        assert fake_llm.requests == []


async def test_chat_answers_503_naming_the_settings_when_no_model_is_configured(tmp_path: Path) -> None:
    async with run_app(make_settings(tmp_path), [calculator_spec()]) as app:
        await app.wait_ready("calculator")
        response = await app.http.post("/api/chat", json={"message": "hi"})
        assert response.status_code == 503
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MCPCHAT_MODEL"):
            assert name in response.json()["detail"]
        created = await app.http.post("/v1/conversations", json={})
        v1 = await app.http.post(f"/v1/conversations/{created.json()['id']}/messages", json={"content": "hi"})
        assert v1.status_code == 503
        # Tools still list and run.
        call = await app.http.post("/v1/tools/calculator__add/call", json={"arguments": {"a": 1, "b": 2}})
        assert call.json()["structured_content"] == {"result": 3}


async def test_tools_and_servers_keep_the_legacy_shapes(chat_app: RunningApp) -> None:
    tools = (await chat_app.http.get("/api/tools")).json()["tools"]
    add = next(t for t in tools if t["function"]["name"] == "calculator__add")
    assert add["type"] == "function"
    assert add["_server"] == "calculator"
    assert add["function"]["parameters"]["required"] == ["a", "b"]
    servers = (await chat_app.http.get("/api/servers")).json()["servers"]
    assert {s["key"] for s in servers} == {"calculator", "test"}
    for server in servers:
        assert {"key", "name", "requires_auth", "authenticated"} <= set(server)
