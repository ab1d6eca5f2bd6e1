"""The Chat Completions HTTP client against the fake OpenAI server: answers, errors, SSE syntax, disconnects."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from yarl import URL

from backend.clients.chat_completions import (
    ChatCompletionsClient,
    ModelConnectionError,
    ModelProtocolError,
    ModelStatusError,
    proxy_for,
)
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.waiting import wait_until

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
STREAMED_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()


@pytest.fixture
async def client(fake_llm: FakeOpenAI) -> AsyncIterator[ChatCompletionsClient]:
    client = ChatCompletionsClient(fake_llm.base_url, api_key="test", timeout_s=10)
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
        client = ChatCompletionsClient(f"http://127.0.0.1:{port}/v1", api_key="test", timeout_s=5)
        try:
            with pytest.raises(ModelConnectionError):
                await client.complete(BODY)
        finally:
            await client.aclose()


async def test_an_unanswered_request_fails_as_a_connection_error_after_the_timeout(fake_llm: FakeOpenAI) -> None:
    fake_llm.script(Reply(hang=True))
    client = ChatCompletionsClient(fake_llm.base_url, api_key="test", timeout_s=0.2)
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
    fake_llm.script(Reply.say("one two three four five six seven eight", chunk_delay_s=0.2))
    stream = await client.open_stream(STREAMED_BODY)
    async for _first in stream.events():
        break
    stream.close()
    await wait_until(lambda: fake_llm.disconnects == 1)


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
    client = ChatCompletionsClient("http://model.invalid/v1", api_key="test", timeout_s=5)
    fake_llm.script(Reply.say("via the proxy"))
    try:
        answer = await client.complete(BODY)
    finally:
        await client.aclose()
    assert answer["choices"][0]["message"]["content"] == "via the proxy"
