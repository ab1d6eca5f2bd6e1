"""Usage limits over HTTP: chat turns and tool calls per user (MCPCHAT_RATE_CHAT, MCPCHAT_RATE_TOOLS) and turns
running at once per user (MCPCHAT_MAX_RUNNING_TURNS_PER_USER), on by default in multi-user mode and off in
single-user mode unless set; a refused request reaches neither model nor server, and stores nothing. With
MCPCHAT_REDIS_URL, replicas share the counters (the Redis tests' keys hold fresh ids, so runs never meet)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import anyio
import httpx
import pytest

from backend.config import Settings
from tests.support.accounts import sign_up_and_in
from tests.support.app_runner import WAIT_S, RunningApp, all_messages, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.problems import assert_problem
from tests.support.services import REDIS_URL_VAR, service_url
from tests.support.specs import calculator_spec, chat_settings, make_settings, testserver_spec
from tests.support.tcp_proxy import tcp_proxy
from tests.support.waiting import wait_until

TURN_ROUTES = ["json", "sse", "legacy"]


@asynccontextmanager
async def member(app: RunningApp, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as a new account of `email`."""
    async with signed_in(app, await sign_up_and_in(app.http, email)) as http:
        yield http


def signed_in(app: RunningApp, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=app.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S)


async def fresh_user(app: RunningApp) -> str:
    """The access token of a user whose id no other test run has, so counters in a shared Redis never meet: the
    first account takes the owner account's fixed id, so another is made first."""
    await sign_up_and_in(app.http, "owner@example.com")
    return await sign_up_and_in(app.http, "ada@example.com")


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


async def test_replicas_sharing_redis_share_each_users_chat_counter(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    # Both replicas on one database (the users) and one Redis (the counters), each with counters of its own in memory.
    settings = multi_user_chat_settings(tmp_path, fake_llm, rate_chat="2/minute", redis_url=service_url(REDIS_URL_VAR))
    async with run_app(settings, []) as first, run_app(settings, []) as second:
        token = await fresh_user(first)
        async with signed_in(first, token) as on_first, signed_in(second, token) as on_second:
            conversation_id = await new_conversation(on_first)
            for content in ("one", "two"):
                assert (await send_turn(on_first, "json", conversation_id, content)).status_code == 200
            refused = await send_turn(on_second, "json", conversation_id, "one too many")
    assert_rate_limited(refused, "chat-user", 2, "chat turns by this user")
    assert len(fake_llm.requests) == 2


async def test_replicas_sharing_redis_share_sign_in_counters(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        auth="multi-user",
        rate_auth="3/minute",
        trusted_proxies=["127.0.0.1"],
        redis_url=service_url(REDIS_URL_VAR),
    )
    # An address and an account no other run counts (documentation addresses, RFC 3849).
    client = {"X-Forwarded-For": f"2001:db8::{uuid4().hex[:4]}:{uuid4().hex[:4]}"}
    wrong = {"email": f"{uuid4().hex}@example.com", "password": "not the password"}
    async with run_app(settings, []) as first, run_app(settings, []) as second:
        for _ in range(3):
            assert (await first.http.post("/v1/auth/login", json=wrong, headers=client)).status_code == 401
        refused = await second.http.post("/v1/auth/login", json=wrong, headers=client)
    assert_rate_limited(refused, "auth-address", 3, "attempts")


async def test_requests_get_503_and_reach_nothing_when_redis_stops_answering(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.responder = lambda _request: Reply.say("fine")
    redis = urlsplit(service_url(REDIS_URL_VAR))
    async with tcp_proxy(redis.hostname or "127.0.0.1", redis.port or 6379) as proxy:
        credentials, at, _address = redis.netloc.rpartition("@")
        through_proxy = redis._replace(netloc=f"{credentials}{at}127.0.0.1:{proxy.port}")
        settings = multi_user_chat_settings(tmp_path, fake_llm, redis_url=urlunsplit(through_proxy))
        async with run_app(settings, []) as app, signed_in(app, await fresh_user(app)) as ada:
            conversation_id = await new_conversation(ada)
            assert (await send_turn(ada, "json", conversation_id, "counted")).status_code == 200
            await proxy.cut()
            refused = await send_turn(ada, "json", conversation_id, "not counted")
            assert_problem(refused, 503, "/problems/rate-limits-unavailable", "MCPCHAT_REDIS_URL", "Try again")
            sign_in = await app.http.post("/v1/auth/login", json={"email": "ada@example.com", "password": "whatever"})
            assert_problem(sign_in, 503, "/problems/rate-limits-unavailable")
            assert await user_messages(ada, "json", conversation_id) == ["counted"]
    assert len(fake_llm.requests) == 1
