"""Usage limits over HTTP: chat turns and tool calls per user (MCPCHAT_RATE_CHAT, MCPCHAT_RATE_TOOLS) and turns
running at once per user (MCPCHAT_MAX_RUNNING_TURNS_PER_USER), on by default in multi-user mode and off in
single-user mode unless set; a refused request reaches neither model nor server, and stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from backend.config import Settings
from tests.support.accounts import sign_up_and_in
from tests.support.app_runner import WAIT_S, RunningApp, all_messages, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.problems import assert_problem
from tests.support.specs import calculator_spec, chat_settings, make_settings, testserver_spec
from tests.support.waiting import wait_until

TURN_ROUTES = ["json", "sse", "legacy"]


@asynccontextmanager
async def member(app: RunningApp, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a new account of `email`."""
    token = await sign_up_and_in(app.http, email)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=app.base_url, headers=headers, timeout=WAIT_S) as http:
        yield http


MULTI_USER = {"auth": "multi-user", "signup": "open", "rate_auth": "1000/minute"}


def multi_user_chat_settings(tmp_path: Path, fake_llm: FakeOpenAI, **overrides: Any) -> Settings:
    return chat_settings(tmp_path, fake_llm, **MULTI_USER, **overrides)


async def send_turn(http: httpx.AsyncClient, route: str, conversation_id: str, content: str) -> httpx.Response:
    """One chat turn through `route`: the JSON or SSE answer of /v1/conversations, or the legacy /api/chat."""
    if route == "legacy":
        return await http.post("/api/chat", json={"message": content})
    headers = {"accept": "text/event-stream"} if route == "sse" else {}
    return await http.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content}, headers=headers)


async def user_messages(http: httpx.AsyncClient, route: str, conversation_id: str) -> list[str]:
    """What the user said, as stored, in the conversation `route` used."""
    if route == "legacy":
        history = (await http.get("/api/history")).json()["history"]
        return [message["content"] for message in history if message["role"] == "user"]
    return [message["content"] for message in await all_messages(http, conversation_id) if message["role"] == "user"]


async def new_conversation(http: httpx.AsyncClient) -> str:
    created = await http.post("/v1/conversations", json={})
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["id"]
    return conversation_id


def assert_rate_limited(response: httpx.Response, policy: str, limit: int, what: str) -> None:
    assert_problem(response, 429, "/problems/rate-limited", f"Too many {what}")
    assert response.headers["ratelimit-policy"] == f'"{policy}";q={limit};w=60'
    assert 1 <= int(response.headers["retry-after"]) <= 60


@pytest.mark.parametrize("route", TURN_ROUTES)
async def test_a_chat_turn_over_the_rate_gets_429_and_reaches_neither_model_nor_history(
    tmp_path: Path, fake_llm: FakeOpenAI, route: str
) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    async with (
        run_app(multi_user_chat_settings(tmp_path, fake_llm, rate_chat="2/minute"), []) as app,
        member(app, "ada@example.com") as ada,
    ):
        conversation_id = await new_conversation(ada)
        for content in ("one", "two"):
            assert (await send_turn(ada, route, conversation_id, content)).status_code == 200
        model_calls = len(fake_llm.requests)
        refused = await send_turn(ada, route, conversation_id, "one too many")
        assert_rate_limited(refused, "chat-user", 2, "chat turns by this user")
        assert len(fake_llm.requests) == model_calls
        assert await user_messages(ada, route, conversation_id) == ["one", "two"]


async def test_tool_calls_prompt_gets_and_resource_reads_over_the_tools_rate_get_429_and_reach_no_server(
    tmp_path: Path, marker_dir: Path
) -> None:
    settings = make_settings(tmp_path, **MULTI_USER, rate_tools="3/minute")
    server = testserver_spec(env={"TEST_SERVER_MARKER_DIR": str(marker_dir)})
    async with run_app(settings, [server]) as app, member(app, "ada@example.com") as ada:
        await app.wait_ready("test")
        calls: dict[
            str, Callable[[], Awaitable[httpx.Response]]
        ] = {  # by the marker the test server writes when the request reaches it
            "request-tools-call": lambda: ada.post("/v1/tools/test__echo/call", json={"arguments": {"text": "hi"}}),
            "request-prompts-get": lambda: ada.post("/v1/prompts/test__greet/get", json={"arguments": {"name": "A"}}),
            "request-resources-read": lambda: ada.get("/v1/resources/read", params={"uri": "test://greeting"}),
        }
        for call in calls.values():  # the three share one counter
            assert (await call()).status_code == 200
        for marker, call in calls.items():
            (marker_dir / marker).unlink()
            refused = await call()
            assert_rate_limited(refused, "tools-user", 3, "tool calls, prompt gets and resource reads by this user")
            assert not (marker_dir / marker).exists()


async def test_each_user_has_chat_and_tool_counters_of_their_own(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    settings = multi_user_chat_settings(tmp_path, fake_llm, rate_chat="1/minute", rate_tools="1/minute")
    add = {"arguments": {"a": 1, "b": 2}}
    async with run_app(settings, [calculator_spec()]) as app:
        await app.wait_ready("calculator")
        async with member(app, "ada@example.com") as ada, member(app, "bob@example.com") as bob:
            ada_conversation, bob_conversation = await new_conversation(ada), await new_conversation(bob)
            assert (await send_turn(ada, "json", ada_conversation, "mine")).status_code == 200
            assert (await ada.post("/v1/tools/calculator__add/call", json=add)).status_code == 200  # not a turn
            assert (await send_turn(ada, "json", ada_conversation, "again")).status_code == 429
            assert (await ada.post("/v1/tools/calculator__add/call", json=add)).status_code == 429
            assert (await send_turn(bob, "json", bob_conversation, "mine")).status_code == 200
            assert (await bob.post("/v1/tools/calculator__add/call", json=add)).status_code == 200


async def test_single_user_mode_limits_no_rate_unless_one_is_set(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    conversation_id = await chat_app.new_conversation()
    # One more of each than multi-user mode's defaults allow in a minute (60 turns, 120 tool calls).
    for number in range(61):
        turn = await send_turn(chat_app.http, "json", conversation_id, f"turn {number}")
        assert turn.status_code == 200, turn.text
    for _ in range(121):
        call = await chat_app.http.post("/v1/tools/calculator__add/call", json={"arguments": {"a": 1, "b": 2}})
        assert call.status_code == 200, call.text


async def test_single_user_mode_limits_chat_turns_when_the_rate_is_set(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    async with run_app(chat_settings(tmp_path, fake_llm, rate_chat="1/minute"), []) as app:
        conversation_id = await app.new_conversation()
        assert (await send_turn(app.http, "json", conversation_id, "one")).status_code == 200
        refused = await send_turn(app.http, "json", conversation_id, "two")
    assert_rate_limited(refused, "chat-user", 1, "chat turns by this user")


async def test_a_users_fifth_running_turn_gets_429_while_others_start_and_a_cancelled_turn_frees_its_place(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.responder = lambda _request: Reply(hang=True)
    async with (
        run_app(multi_user_chat_settings(tmp_path, fake_llm), []) as app,
        member(app, "ada@example.com") as ada,
        member(app, "bob@example.com") as bob,
        anyio.create_task_group() as turns,
    ):
        conversations = [await new_conversation(ada) for _ in range(4)]
        for route, conversation_id in zip(["json", "json", "sse", "legacy"], conversations, strict=True):
            turns.start_soon(send_turn, ada, route, conversation_id, "wait")
        await wait_until(lambda: len(fake_llm.requests) == 4)  # the multi-user default: 4 running turns a user
        spare = await new_conversation(ada)
        for route in TURN_ROUTES:
            with anyio.fail_after(5):
                refused = await send_turn(ada, route, spare, "a fifth")
            assert_problem(refused, 429, "/problems/too-many-running-turns", "You have 4 turns running")
        assert await user_messages(ada, "json", spare) == []
        assert len(fake_llm.requests) == 4
        turns.start_soon(send_turn, bob, "json", await new_conversation(bob), "mine")
        await wait_until(lambda: len(fake_llm.requests) == 5)
        assert (await ada.post(f"/v1/conversations/{conversations[0]}/cancel")).json() == {"cancelled_turns": 1}
        await wait_until(lambda: app.chat.running.count() == 4)
        turns.start_soon(send_turn, ada, "json", spare, "there is room now")
        await wait_until(lambda: len(fake_llm.requests) == 6)
        turns.cancel_scope.cancel()  # the clients leave: their turns are cancelled


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled", "client gone"])
async def test_a_turn_frees_its_running_place_however_it_ends(
    tmp_path: Path, fake_llm: FakeOpenAI, ending: str
) -> None:
    settings = chat_settings(tmp_path, fake_llm, max_running_turns_per_user=1)  # set: it applies in single-user mode
    async with run_app(settings, []) as app:
        first, second = await app.new_conversation(), await app.new_conversation()
        if ending in ("completed", "failed"):
            fake_llm.script(Reply.say("done") if ending == "completed" else Reply.error(400))
            await send_turn(app.http, "json", first, "one")
        else:
            fake_llm.script(Reply(hang=True))
            async with anyio.create_task_group() as turn:
                turn.start_soon(send_turn, app.http, "json", first, "one")
                await wait_until(lambda: len(fake_llm.requests) == 1)
                assert (await send_turn(app.http, "json", second, "two")).status_code == 429
                if ending == "cancelled":
                    await app.http.post(f"/v1/conversations/{first}/cancel")
                else:
                    turn.cancel_scope.cancel()  # closes the connection mid-turn
        await wait_until(lambda: app.chat.running.count() == 0)
        fake_llm.script(Reply.say("again"))
        again = await send_turn(app.http, "json", second, "two")
        assert again.status_code == 200, again.text


async def test_single_user_mode_caps_no_running_turns_unless_set(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply(hang=True)
    async with anyio.create_task_group() as turns:
        for _ in range(5):  # one more than multi-user mode's default
            turns.start_soon(send_turn, chat_app.http, "json", await chat_app.new_conversation(), "wait")
        await wait_until(lambda: len(fake_llm.requests) == 5)
        turns.cancel_scope.cancel()
