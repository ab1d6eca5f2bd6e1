"""The Chat Completions HTTP client against the fake OpenAI server: answers, errors, SSE syntax, disconnects,
its connection pool."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs
from yarl import URL

from backend.clients.chat_completions import (
    ChatCompletionsClient,
    ModelConnectionError,
    ModelProtocolError,
    ModelStatusError,
    proxy_for,
)
from backend.config import Settings
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.waiting import wait_until

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAMED_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()
# What the app runs with unless MCPCHAT_LLM_MAX_CONNECTIONS says otherwise.
DEFAULT_MAX_CONNECTIONS: int = Settings.model_fields["llm_max_connections"].default


@pytest.fixture
async def client(fake_llm: FakeOpenAI) -> AsyncIterator[ChatCompletionsClient]:
    client = ChatCompletionsClient(
        fake_llm.base_url, api_key="test", timeout_s=10, max_connections=DEFAULT_MAX_CONNECTIONS
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_complete_returns_the_decoded_answer_when_the_key_is_sent_as_bearer(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.say("hello there"))
    answer = await client.complete(BODY)
    assert answer["choices"][0]["message"]["content"] == "hello there"
    assert fake_llm.requests == [json.loads(BODY)]  # the fake answers 401 without a bearer token


async def test_status_error_carries_the_servers_message_and_retry_after_when_the_model_refuses(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.error(429, retry_after=2.5))
    with pytest.raises(ModelStatusError) as caught:
        await client.complete(BODY)
    assert (caught.value.status, caught.value.message, caught.value.retry_after_s) == (429, "Scripted error 429.", 2.5)


async def test_opening_a_stream_raises_the_status_error_when_the_model_fails(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.error(503))
    with pytest.raises(ModelStatusError) as caught:
        await client.open_stream(STREAMED_BODY)
    assert (caught.value.status, caught.value.retry_after_s) == (503, None)


async def test_connection_error_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        client = ChatCompletionsClient(f"http://127.0.0.1:{port}/v1", api_key="test", timeout_s=5, max_connections=1)
        try:
            with pytest.raises(ModelConnectionError):
                await client.complete(BODY)
        finally:
            await client.aclose()


async def test_an_unanswered_request_fails_as_a_connection_error_after_the_timeout(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(Reply(hang=True))
    client = ChatCompletionsClient(fake_llm.base_url, api_key="test", timeout_s=0.2, max_connections=1)
    try:
        with anyio.fail_after(5), pytest.raises(ModelConnectionError):
            await client.complete(BODY)
    finally:
        await client.aclose()


async def test_stream_yields_each_events_data_until_done_whatever_the_sse_spelling(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    raw = (
        b": a comment first\n\n"
        b'data: {"n": 1}\n\n'
        b'data:{"n": 2}\r\n\r\n'  # no space after the colon, CRLF line ends
        b"event: message\n"
        b'data: {"n":\n'
        b"data: 3}\n\n"  # one event's data over two lines
        b"data: [DONE]\n\n"
        b'data: {"n": 4}\n\n'  # after [DONE]: not read
    )
    fake_llm.script(Reply(raw_stream=raw))
    stream = await client.open_stream(STREAMED_BODY)
    try:
        events = [event async for event in stream.events()]
    finally:
        stream.close()
    assert events == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_stream_event_that_is_not_json_is_a_protocol_error(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply(raw_stream=b"data: {not json\n\n"))
    stream = await client.open_stream(STREAMED_BODY)
    try:
        with pytest.raises(ModelProtocolError):
            _ = [event async for event in stream.events()]
    finally:
        stream.close()


async def test_closing_a_stream_early_disconnects_from_the_server(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Reply.say("one two three four five six seven eight", chunk_delay_s=0.2), Reply.say("next"))
    stream = await client.open_stream(STREAMED_BODY)
    async with aclosing(stream.events()) as events:
        async for _first in events:
            break
    stream.close()
    await wait_until(lambda: fake_llm.disconnects == 1)
    await client.complete(BODY)
    assert fake_llm.client_addresses[1] != fake_llm.client_addresses[0]  # the abandoned connection was not reused


async def test_streams_read_through_done_reuse_one_connection_when_the_body_ends_in_a_later_packet(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    # The chunked body's last chunk comes after `[DONE]`, on its own, as it often does through a real network.
    fake_llm.script(Reply.say("one two", end_delay_s=0.05), Reply.say("three four", end_delay_s=0.05))
    texts = []
    with anyio.fail_after(5):
        for _ in range(2):
            stream = await client.open_stream(STREAMED_BODY)
            try:
                events = [event async for event in stream.events()]
            finally:
                stream.close()
            texts.append("".join(event["choices"][0]["delta"].get("content", "") for event in events))
    assert texts == ["one two", "three four"]
    [first, second] = fake_llm.client_addresses
    assert first == second
    assert fake_llm.disconnects == 0


async def test_150_calls_are_all_in_flight_at_once_when_the_connection_limit_is_the_default(
    client: ChatCompletionsClient, fake_llm: FakeOpenAI
) -> None:
    fake_llm.responder = lambda _request: Reply.say("ok")
    fake_llm.hold_answers_until_open(150)  # a pool of fewer connections never gets there: the calls hang
    answers: list[Any] = []

    async def call() -> None:
        answers.append(await client.complete(BODY))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(150):
                tg.start_soon(call)
    assert len(answers) == 150
    assert client.queued_calls == 0


async def test_a_call_waits_and_is_counted_and_logged_when_max_connections_are_busy(fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda _request: Reply.say("ok")
    fake_llm.hold_answers_until_open(2)  # the first two hold both connections until both are open
    client = ChatCompletionsClient(fake_llm.base_url, api_key="test", timeout_s=10, max_connections=2)
    try:
        with capture_logs() as logs, anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(client.complete, BODY)
    finally:
        await client.aclose()
    assert len(fake_llm.requests) == 3
    assert client.queued_calls == 1
    assert client.queued_s_total > 0
    [waited] = [entry for entry in logs if entry["event"] == "llm.connection.waited"]
    assert (waited["log_level"], waited["max_connections"]) == ("warning", 2)
    assert isinstance(waited["waited_ms"], float)


def test_the_proxy_comes_from_the_environment_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.corp.example")
    assert proxy_for(URL("https://api.openai.com/v1/chat/completions")) == "http://proxy.internal:3128"
    assert proxy_for(URL("https://llm.corp.example/v1/chat/completions")) is None
    assert proxy_for(URL("http://127.0.0.1:11434/v1/chat/completions")) is None  # no HTTP_PROXY either


async def test_requests_go_through_the_environments_proxy_when_one_is_set(
    fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake answers absolute-form requests too, so it can stand in for the proxy of a host that does not exist.
    monkeypatch.setenv("HTTP_PROXY", fake_llm.base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = ChatCompletionsClient("http://model.invalid/v1", api_key="test", timeout_s=5, max_connections=1)
    fake_llm.script(Reply.say("via the proxy"))
    try:
        answer = await client.complete(BODY)
    finally:
        await client.aclose()
    assert answer["choices"][0]["message"]["content"] == "via the proxy"
