"""/v1/conversations: CRUD, pagination, and chat turns answered as JSON or streamed as SSE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply, ToolCallSpec
from tests.support.specs import chat_settings, testserver_spec
from tests.support.sse import stream_turn, turn_events
from tests.support.waiting import wait_until


async def test_conversations_are_created_listed_renamed_and_deleted(chat_app: RunningApp) -> None:
    ids = [await chat_app.new_conversation(f"c{i}") for i in range(5)]
    first_page = (await chat_app.http.get("/v1/conversations", params={"limit": 2})).json()
    assert [c["id"] for c in first_page["items"]] == ids[::-1][:2]  # newest first
    seen = [c["id"] for c in first_page["items"]]
    cursor = first_page["next_cursor"]
    while cursor:
        page = (await chat_app.http.get("/v1/conversations", params={"limit": 2, "cursor": cursor})).json()
        seen.extend(c["id"] for c in page["items"])
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    renamed = await chat_app.http.patch(f"/v1/conversations/{ids[0]}", json={"title": "renamed"})
    assert renamed.json()["title"] == "renamed"
    assert (await chat_app.http.get(f"/v1/conversations/{ids[0]}")).json()["title"] == "renamed"  # and stored
    assert (await chat_app.http.delete(f"/v1/conversations/{ids[0]}")).status_code == 204
    gone = await chat_app.http.get(f"/v1/conversations/{ids[0]}")
    assert gone.status_code == 404
    assert gone.json()["type"] == "/problems/conversation-not-found"
    assert (await chat_app.http.delete(f"/v1/conversations/{ids[0]}")).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/conversations?limit=0", None, 422),
        ("GET", "/v1/conversations?limit=101", None, 422),
        ("GET", "/v1/conversations?limit=abc", None, 422),
        ("GET", "/v1/conversations?cursor=not-a-cursor", None, 400),
        ("POST", "/v1/conversations", {"title": "x" * 201}, 422),
        ("POST", "/v1/conversations", {"unknown": 1}, 422),
        ("POST", "/v1/conversations/missing/messages", {"content": "hi"}, 404),
        ("POST", "/v1/conversations/{id}/messages", {"content": ""}, 422),
        ("POST", "/v1/conversations/{id}/messages", {"content": 5}, 422),
        ("POST", "/v1/conversations/{id}/messages", {}, 422),
        ("PATCH", "/v1/conversations/{id}", {"title": 5}, 422),
        ("POST", "/v1/conversations/missing/cancel", None, 404),
        ("GET", "/v1/conversations/missing/messages", None, 404),
        ("GET", "/v1/conversations/{id}/messages?limit=0", None, 422),
        ("GET", "/v1/conversations/{id}/messages?limit=201", None, 422),
        ("GET", "/v1/conversations/{id}/messages?cursor=bm90IGpzb24", None, 400),
        ("GET", "/v1/conversations/{id}/messages?cursor=" + "x" * 201, None, 422),
    ],
)
async def test_conversation_routes_answer_problems_when_input_is_bad(
    chat_app: RunningApp, fake_llm: FakeOpenAI, method: str, path: str, body: object, status: int
) -> None:
    conversation_id = await chat_app.new_conversation()
    response = await chat_app.http.request(method, path.replace("{id}", conversation_id), json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert fake_llm.requests == []


async def test_streaming_to_a_missing_conversation_is_a_404_problem_before_any_event(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    response = await chat_app.http.post(
        "/v1/conversations/missing/messages", json={"content": "hi"}, headers={"accept": "text/event-stream"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/conversation-not-found"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert fake_llm.requests == []


async def test_message_turn_answers_json_with_the_final_message_and_tool_calls(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply.call(("test__structured", {"n": 4})), Reply.say("16"))
    response = await chat_app.http.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "4²?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["message"]["content"] == "16"
    [call] = body["tool_calls"]
    assert call["result"]["structured_content"] == {"n": 4, "squared": 16}
    assert (call["server"], call["arguments"], call["is_error"], call["status"]) == (
        "test",
        {"n": 4},
        False,
        "completed",
    )
    stored = await chat_app.messages(conversation_id)
    assert [(m["role"], m["content"]) for m in stored] == [("user", "4²?"), ("assistant", ""), ("assistant", "16")]
    assert stored[1]["tool_calls"][0]["id"] == call["id"]


async def test_message_turn_streams_events_in_order_with_monotonic_ids(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply.call(("test__progress", {"steps": 2, "delay_s": 0.01})), Reply.say("All two steps are done."))
    events = await stream_turn(chat_app.http, conversation_id, "run the steps")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    kinds = [e.type for e in events]
    assert kinds[0] == "message.created"
    assert events[0].data["role"] == "user"
    started = kinds.index("tool_call.started")
    completed = kinds.index("tool_call.completed")
    assert kinds[started + 1 : completed] == ["tool_call.progress", "tool_call.progress"]
    assert [e.data["progress"] for e in events if e.type == "tool_call.progress"] == [1, 2]
    assert "".join(e.data["text"] for e in events if e.type == "message.delta") == "All two steps are done."
    assert kinds[-2:] == ["message.completed", "done"]
    assert events[-2].data["content"] == "All two steps are done."
    assert events[completed].data["is_error"] is False
    tool_id = events[started].data["tool_call_id"]
    assert all(e.data["tool_call_id"] == tool_id for e in events if e.type.startswith("tool_call."))


async def test_stream_reports_a_model_failure_as_an_error_event(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(*[Reply.error(500)] * 4)
    events = await stream_turn(chat_app.http, conversation_id, "hello?")
    assert [e.type for e in events] == ["message.created", "error", "done"]
    assert events[1].data["status"] == 502
    assert events[1].data["type"] == "/problems/llm-error"


async def test_messages_keep_tool_results_with_their_call_when_read_back(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(
        Reply.call(("calculator__add", {"a": 1, "b": 1}), ("calculator__multiply", {"a": 2, "b": 2})),
        Reply.say("2 and 4"),
    )
    await chat_app.http.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "both"})
    messages = await chat_app.messages(conversation_id)
    results = [call["result"]["structured_content"]["result"] for call in messages[1]["tool_calls"]]
    assert results == [2, 4]


async def test_messages_are_paged_newest_first_and_the_first_page_holds_the_newest(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    for number in range(30):
        fake_llm.script(Reply.say(f"answer {number}"))
        response = await chat_app.http.post(
            f"/v1/conversations/{conversation_id}/messages", json={"content": f"question {number}"}
        )
        assert response.status_code == 200
    url = f"/v1/conversations/{conversation_id}/messages"
    first = (await chat_app.http.get(url)).json()
    assert len(first["items"]) == 50  # the default page
    assert [m["content"] for m in first["items"][:3]] == ["answer 29", "question 29", "answer 28"]
    last = (await chat_app.http.get(url, params={"cursor": first["next_cursor"]})).json()
    assert [m["content"] for m in last["items"]] == [
        text for number in range(4, -1, -1) for text in (f"answer {number}", f"question {number}")
    ]
    assert last["next_cursor"] is None
    small = (await chat_app.http.get(url, params={"limit": 3})).json()
    assert [m["content"] for m in small["items"]] == ["answer 29", "question 29", "answer 28"]
    conversation = (await chat_app.http.get(f"/v1/conversations/{conversation_id}")).json()
    assert "messages" not in conversation  # paged at .../messages, never all at once


async def test_a_large_tool_result_is_stored_and_streamed_cut_with_a_note_and_its_size(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = chat_settings(tmp_path, fake_llm, tool_result_store_max_bytes=2000)
    async with run_app(settings, [testserver_spec()]) as app:
        await app.wait_ready("test")
        conversation_id = await app.new_conversation()
        big = "0123456789" * 1000
        fake_llm.script(Reply.call(ToolCallSpec("test__echo", {"text": big})), Reply.say("done"))
        events = await stream_turn(app.http, conversation_id, "echo a lot")
        [completed] = [event.data for event in events if event.type == "tool_call.completed"]
        [stored] = (await app.messages(conversation_id))[1]["tool_calls"]
    for result in (completed["result"], stored["result"]):
        assert result["truncated"]["original_bytes"] > len(big)
        assert len(json.dumps(result)) <= 2000 + 100  # the cap, give or take the note's own size
        assert result["content"][0]["text"] == big[: len(result["content"][0]["text"])]
        assert "MCPCHAT_TOOL_RESULT_STORE_MAX_BYTES" in result["content"][-1]["text"]
    assert stored["result"] == completed["result"]
    # The model was still shown the result up to its own, separate cap.
    assert fake_llm.requests[1]["messages"][-1]["content"] == big


async def test_deleting_a_conversation_cancels_its_running_turn_first(
    chat_app: RunningApp, fake_llm: FakeOpenAI
) -> None:
    conversation_id = await chat_app.new_conversation()
    fake_llm.script(Reply(text="never", hang=True))
    async with turn_events(chat_app.http, conversation_id, "wait") as stream:
        async for event in stream:
            if event.type == "message.created":
                await wait_until(lambda: len(fake_llm.requests) == 1)
                deleted = await chat_app.http.delete(f"/v1/conversations/{conversation_id}")
                assert deleted.status_code == 204
            elif event.type == "error":
                assert event.data["type"] == "/problems/turn-cancelled"
            elif event.type == "done":
                break
    await wait_until(lambda: fake_llm.disconnects == 1)  # the model call was cancelled
    await wait_until(lambda: chat_app.chat.running.count() == 0)
    assert (await chat_app.http.get(f"/v1/conversations/{conversation_id}")).status_code == 404
