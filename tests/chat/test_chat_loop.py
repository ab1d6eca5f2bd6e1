"""The chat loop against the fake model and real MCP servers: parallel tools, tool errors, caps, retries,
cancellation, concurrent turns and the context budget."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from backend.db.database import open_database
from backend.db.models import Conversation, Message, Turn, TurnStatus, new_id, utcnow
from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply, ToolCallSpec
from tests.support.services import empty_postgres
from tests.support.specs import calculator_spec, chat_settings, testserver_spec
from tests.support.sse import stream_turn, turn_events
from tests.support.waiting import wait_until


async def send(app: RunningApp, conversation_id: str, content: str) -> httpx.Response:
    return await app.http.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content})


def tool_messages(request: dict[str, Any]) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in request["messages"] if m["role"] == "tool"}


async def test_parallel_tool_calls_overlap_when_the_model_asks_for_several(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    # Each barrier call succeeds only if the other two are running at the same time.
    names = ["a", "b", "c"]
    calls = [
        ToolCallSpec("test__barrier", {"name": n, "others": [o for o in names if o != n]}, id=f"call_{n}")
        for n in names
    ]
    fake_llm.script(Reply.call(*calls), Reply.say("met"))
    body = (await send(chat_app, await chat_app.new_conversation(), "meet")).json()
    assert [call["is_error"] for call in body["tool_calls"]] == [False, False, False]
    results = tool_messages(fake_llm.requests[1])
    assert results["call_a"] == "a met b, c"
    # Results go back in the order the model asked, whatever order they finished in.
    assert [m["tool_call_id"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"] == [
        "call_a",
        "call_b",
        "call_c",
    ]


async def test_the_model_sees_the_system_prompt_then_the_history_then_the_message_when_one_is_set(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.call(("calculator__add", {"a": 1, "b": 2})), Reply.say("3"), Reply.say("4"))
    settings = chat_settings(tmp_path, fake_llm, system_prompt="Answer in one word.")
    async with run_app(settings, [calculator_spec()]) as app:
        await app.wait_ready("calculator")
        conversation_id = await app.new_conversation()
        await send(app, conversation_id, "1 + 2?")
        await send(app, conversation_id, "and 2 + 2?")
    first, with_result, second_turn = (request["messages"] for request in fake_llm.requests)
    system = {"role": "system", "content": "Answer in one word."}
    assert first == [system, {"role": "user", "content": "1 + 2?"}]
    assert [m["role"] for m in with_result] == ["system", "user", "assistant", "tool"]
    assert with_result[3]["content"] == "1 + 2 = 3"
    # The earlier turn, whole and in order, between the system prompt and the new message.
    assert second_turn == [
        *with_result,
        {"role": "assistant", "content": "3"},
        {"role": "user", "content": "and 2 + 2?"},
    ]


async def test_every_kind_of_tool_failure_goes_back_to_the_model(
    tmp_path: Path, marker_dir: Path, fake_llm: FakeOpenAI
) -> None:
    specs = [
        calculator_spec(),
        testserver_spec(env={"TEST_SERVER_MARKER_DIR": str(marker_dir)}, timeout_s=1),
    ]
    async with run_app(chat_settings(tmp_path, fake_llm), specs) as app:
        await app.wait_ready("calculator", "test")
        fake_llm.script(
            Reply.call(
                ToolCallSpec("nobody__nothing", {}, id="unknown"),
                ToolCallSpec("calculator__add", '{"a": 1, "b":', id="bad_json"),
                ToolCallSpec("calculator__add", "[1, 2]", id="not_object"),
                ToolCallSpec("calculator__add", {"a": "one", "b": 2}, id="schema"),
                ToolCallSpec("test__fail", {}, id="is_error"),
                ToolCallSpec("test__hang", {"seconds": 600}, id="timeout"),
            ),
            Reply.say("Some tools failed."),
        )
        response = await send(app, await app.new_conversation(), "try everything")
        assert response.status_code == 200, response.text
        assert response.json()["message"]["content"] == "Some tools failed."
        assert all(call["is_error"] for call in response.json()["tool_calls"])
        results = tool_messages(fake_llm.requests[1])
        assert all(text.startswith("[tool error] ") for text in results.values())
        assert "No tool is named 'nobody__nothing'" in results["unknown"]
        assert "not valid JSON" in results["bad_json"]
        assert "must be a JSON object" in results["not_object"]
        assert "input schema" in results["schema"]
        assert "this tool always fails" in results["is_error"]
        assert "timed out" in results["timeout"].lower() or "timeout" in results["timeout"].lower()

        # A server that has gone away: its tool fails fast, the turn completes.
        fake_llm.script(Reply.call(ToolCallSpec("test__crash", {}, id="crash")), Reply.say("The server died."))
        after = await send(app, await app.new_conversation(), "crash it")
        assert after.json()["message"]["content"] == "The server died."
        assert "[tool error]" in tool_messages(fake_llm.requests[3])["crash"]


async def test_tool_rounds_stop_at_the_cap_with_a_clear_message(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.call(("calculator__add", {"a": 1, "b": 1}))
    async with run_app(chat_settings(tmp_path, fake_llm, max_tool_rounds=3), [calculator_spec()]) as app:
        await app.wait_ready("calculator")
        body = (await send(app, await app.new_conversation(), "loop forever")).json()
    assert "MCPCHAT_MAX_TOOL_ROUNDS=3" in body["message"]["content"]
    assert len(body["tool_calls"]) == 3
    assert len(fake_llm.requests) == 3


async def test_transient_model_errors_are_retried_honouring_retry_after(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.error(429, retry_after=0.3), Reply.error(503), Reply.say("made it"))
    started = time.monotonic()
    response = await send(chat_app, await chat_app.new_conversation(), "hello")
    assert response.json()["message"]["content"] == "made it"
    assert len(fake_llm.requests) == 3
    # The wait the server asked for was honoured (a lower bound, not a speed target).
    assert time.monotonic() - started >= 0.3


async def test_model_failure_after_last_retry_is_a_clear_error_and_keeps_the_user_message(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(*[Reply.error(500)] * 4)
    conversation_id = await chat_app.new_conversation()
    response = await send(chat_app, conversation_id, "are you there?")
    assert response.status_code == 502
    assert "after 4 tries" in response.json()["detail"]
    assert len(fake_llm.requests) == 4
    messages = await chat_app.messages(conversation_id)
    assert [(m["role"], m["content"]) for m in messages] == [("user", "are you there?")]


async def test_a_refused_request_is_not_retried(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    fake_llm.script(Reply.error(400))
    response = await send(chat_app, await chat_app.new_conversation(), "hello")
    assert response.status_code == 502
    assert "refused" in response.json()["detail"]
    assert len(fake_llm.requests) == 1


async def test_cancel_endpoint_stops_the_tool_on_its_server_and_stores_the_turn_as_cancelled(
    chat_app: RunningApp, fake_llm: FakeOpenAI, marker_dir: Path
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply.call(("test__hang", {"seconds": 600})))
    seen: list[str] = []
    async with turn_events(chat_app.http, conversation_id, "hang") as stream:
        async for event in stream:
            seen.append(event.type)
            if event.type == "tool_call.started":
                await wait_until(lambda: (marker_dir / "started-hang").exists())
                cancel = await chat_app.http.post(f"/v1/conversations/{conversation_id}/cancel")
                assert cancel.json() == {"cancelled_turns": 1}
            if event.type == "error":
                assert event.data["type"] == "/problems/turn-cancelled"
            if event.type == "done":
                break
    assert seen[-2:] == ["error", "done"]
    await wait_until(lambda: (marker_dir / "cancelled-hang").exists())
    messages = await chat_app.messages(conversation_id)
    assert messages[1]["tool_calls"][0]["status"] == "cancelled"


async def test_closing_the_stream_cancels_the_model_call(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply(text="never", hang=True))
    async with turn_events(chat_app.http, conversation_id, "wait") as stream:
        async for event in stream:
            if event.type == "message.created":
                await wait_until(lambda: len(fake_llm.requests) == 1)
                break  # leaving the block closes the connection
    await wait_until(lambda: fake_llm.disconnects == 1)
    await wait_until(lambda: chat_app.chat.running.count() == 0)


async def test_a_json_turn_whose_client_leaves_is_cancelled_and_keeps_the_user_message(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply(text="never", hang=True))
    async with httpx.AsyncClient(base_url=chat_app.base_url) as impatient, anyio.create_task_group() as tg:

        async def ask() -> None:
            await impatient.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "wait"})

        tg.start_soon(ask)
        await wait_until(lambda: len(fake_llm.requests) == 1)
        tg.cancel_scope.cancel()  # closes the connection mid-turn
    await wait_until(lambda: fake_llm.disconnects == 1)  # the model call was cancelled
    await wait_until(lambda: chat_app.chat.running.count() == 0)
    messages = await chat_app.messages(conversation_id)
    assert [(m["role"], m["content"]) for m in messages] == [("user", "wait")]


async def test_closing_the_stream_mid_tool_cancels_the_tool_and_keeps_what_was_said(
    chat_app: RunningApp, fake_llm: FakeOpenAI, marker_dir: Path
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply(text="Let me wait.", tool_calls=[ToolCallSpec("test__hang", {"seconds": 600})]))
    async with turn_events(chat_app.http, conversation_id, "hang") as stream:
        async for event in stream:
            if event.type == "tool_call.started":
                await wait_until(lambda: (marker_dir / "started-hang").exists())
                break
    await wait_until(lambda: (marker_dir / "cancelled-hang").exists())
    await wait_until(lambda: chat_app.chat.running.count() == 0)
    messages = await chat_app.messages(conversation_id)
    assert [(m["role"], m["content"]) for m in messages] == [("user", "hang"), ("assistant", "Let me wait.")]
    assert messages[1]["tool_calls"][0]["status"] == "cancelled"


def echo_responder(request: dict[str, Any]) -> Reply:
    """Echo the turn's number through the test server: proves which turn each answer belongs to."""
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply.say(f"echo {last['content']}")
    number = last["content"].removeprefix("turn ")
    return Reply.call(("test__echo", {"text": number}))


async def test_concurrent_turns_in_one_conversation_never_mix(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = echo_responder
    conversation_id = await chat_app.new_conversation()
    answers: dict[int, str] = {}

    async def turn(number: int) -> None:
        response = await send(chat_app, conversation_id, f"turn {number}")
        assert response.status_code == 200, response.text
        answers[number] = response.json()["message"]["content"]

    async with anyio.create_task_group() as tg:
        for number in range(20):
            tg.start_soon(turn, number)
    assert answers == {number: f"echo {number}" for number in range(20)}
    for request in fake_llm.requests:
        # Every request holds complete turns (a tool-call message directly followed by its results) and
        # the current turn's own messages, never another running turn's partial ones.
        messages = request["messages"]
        for index, message in enumerate(messages):
            if message["role"] == "assistant" and message.get("tool_calls"):
                ids = [call["id"] for call in message["tool_calls"]]
                assert [m.get("tool_call_id") for m in messages[index + 1 : index + 1 + len(ids)]] == ids
        user_turns = [m["content"] for m in messages if m["role"] == "user"]
        assert len(set(user_turns)) == len(user_turns)
    stored = await chat_app.messages(conversation_id)
    assert len(stored) == 60
    for index in range(0, 60, 3):  # each turn's messages stay together: user, tool call, answer
        user, call, answer = stored[index : index + 3]
        number = user["content"].removeprefix("turn ")
        assert json.loads(json.dumps(call["tool_calls"][0]["arguments"])) == {"text": number}
        assert answer["content"] == f"echo {number}"


async def test_the_model_streams_only_when_a_client_watches_the_turn(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply.say("whole"), Reply.say("in pieces"))
    response = await send(chat_app, conversation_id, "json please")
    assert response.json()["message"]["content"] == "whole"
    events = await stream_turn(chat_app.http, conversation_id, "stream please")
    assert "".join(e.data["text"] for e in events if e.type == "message.delta") == "in pieces"
    assert [request.get("stream", False) for request in fake_llm.requests] == [False, True]


async def test_context_is_the_newest_history_that_fits_on_a_long_conversation(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = chat_settings(tmp_path, fake_llm, context_max_tokens=2000)
    async with run_app(settings, [calculator_spec()]) as app:
        conversation_id = await app.new_conversation()
        await seed_history(settings.database_url, conversation_id, turns=1000)
        fake_llm.script(Reply.say("ok"))
        response = await send(app, conversation_id, "latest question")
        assert response.status_code == 200
        messages = fake_llm.requests[0]["messages"]
        assert messages[-1] == {"role": "user", "content": "latest question"}
        history = messages[:-1]
        assert 0 < len(history) < 200  # far fewer than the 2,000 stored
        assert history[-1]["content"] == "answer 999"  # the newest turns, in order
        assert history[0]["role"] == "user"  # whole turns only
        sent_chars = sum(len(m["content"] or "") for m in messages)
        assert sent_chars // 4 <= 2000
        stored = await app.messages(conversation_id)
        assert len(stored) == 2002  # the stored history stays complete


async def test_context_follows_the_database_when_another_writer_adds_turns(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = chat_settings(tmp_path, fake_llm)
    async with run_app(settings, [calculator_spec()]) as app:
        conversation_id = await app.new_conversation()
        fake_llm.script(Reply.say("first answer"), Reply.say("second answer"))
        assert (await send(app, conversation_id, "first")).status_code == 200  # its turn is now rendered and kept
        await seed_history(settings.database_url, conversation_id, turns=2)  # as another process would
        assert (await send(app, conversation_id, "second")).status_code == 200
        sent = [(m["role"], m["content"]) for m in fake_llm.requests[1]["messages"]]
        assert sent == [
            ("user", "question 0 " + "x" * 40),
            ("assistant", "answer 0"),
            ("user", "question 1 " + "x" * 40),
            ("assistant", "answer 1"),
            ("user", "first"),
            ("assistant", "first answer"),
            ("user", "second"),
        ]


async def test_turns_store_and_replay_their_history_on_postgresql(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = chat_settings(tmp_path, fake_llm, database_url=await empty_postgres())
    async with run_app(settings, [calculator_spec()]) as app:
        await app.wait_ready("calculator")
        conversation_id = await app.new_conversation()
        fake_llm.script(Reply.call(("calculator__add", {"a": 2, "b": 3})), Reply.say("5"), Reply.say("still 5"))
        first = (await send(app, conversation_id, "2 + 3?")).json()
        assert first["message"]["content"] == "5"
        assert first["tool_calls"][0]["result"]["structured_content"] == {"result": 5}
        assert (await send(app, conversation_id, "again?")).json()["message"]["content"] == "still 5"
        sent = fake_llm.requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
        assert sent[2]["content"] == "2 + 3 = 5"
        stored = await app.messages(conversation_id)
        assert [m["content"] for m in stored] == ["2 + 3?", "", "5", "again?", "still 5"]
        fake_llm.script(Reply.say("legacy works"))
        legacy = await app.http.post("/api/chat", json={"message": "hello"})
        assert legacy.json() == {"response": "legacy works", "tool_calls": []}


async def seed_history(database_url: str, conversation_id: str, turns: int) -> None:
    """Write `turns` finished question/answer turns straight into the database (fast, one transaction), as
    another process would."""
    database = open_database(database_url)
    await database.write(partial(_seed, conversation_id=conversation_id, turns=turns))
    await database.aclose()


def _seed(connection: Connection, conversation_id: str, turns: int) -> None:
    with Session(connection) as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        base = utcnow().timestamp() - turns
        for number in range(turns):
            at = datetime.fromtimestamp(base + number, UTC)
            turn = Turn(
                id=new_id(),
                conversation_id=conversation_id,
                status=TurnStatus.COMPLETED.value,
                tokens=30,
                started_at=at,
                finished_at=at,
            )
            session.add(turn)
            for seq, (role, content) in enumerate(
                [("user", f"question {number} " + "x" * 40), ("assistant", f"answer {number}")]
            ):
                session.add(
                    Message(
                        id=new_id(),
                        conversation_id=conversation_id,
                        turn_id=turn.id,
                        seq=seq,
                        role=role,
                        content=content,
                        created_at=at,
                    )
                )
        session.flush()
