"""The fake OpenAI server speaks enough of the protocol for the official SDK: the chat tests rely on it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import httpx
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

from tests.support.fake_openai import FakeOpenAI, Reply, ToolCallSpec, calculator_responder
from tests.support.processes import free_port, wait_http_ok
from tests.support.specs import REPO_ROOT
from tests.support.waiting import wait_until

MODEL = "gpt-4o-mini"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(fake_llm: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """The official SDK pointed at the fake; no retries, so each call is exactly one request."""
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="test", max_retries=0, timeout=10) as sdk:
        yield sdk


@dataclass
class StreamedCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Streamed:
    """What a client rebuilds from a stream, accumulating deltas the way OpenAI documents."""

    text: str = ""
    content_chunks: int = 0
    calls: dict[int, StreamedCall] = field(default_factory=dict)
    finish_reason: str | None = None
    total_tokens: int | None = None


async def collect(stream: AsyncStream[ChatCompletionChunk]) -> Streamed:
    """Read a stream to its end and rebuild the message from its deltas."""
    streamed = Streamed()
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None:
                streamed.total_tokens = chunk.usage.total_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    streamed.text += choice.delta.content
                    streamed.content_chunks += 1
                for delta in choice.delta.tool_calls or []:
                    call = streamed.calls.setdefault(delta.index, StreamedCall())
                    call.id += delta.id or ""
                    if delta.function is not None:
                        call.name += delta.function.name or ""
                        call.arguments += delta.function.arguments or ""
                streamed.finish_reason = choice.finish_reason or streamed.finish_reason
    return streamed


async def test_create_returns_scripted_text_when_not_streaming(fake_llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_llm.script(Reply.say("Hello there, friend.", usage=(7, 4)))

    completion = await client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0.5)

    choice = completion.choices[0]
    assert (choice.message.content, choice.message.tool_calls, choice.finish_reason) == (
        "Hello there, friend.",
        None,
        "stop",
    )
    assert completion.model == MODEL
    assert completion.usage is not None and completion.usage.total_tokens == 11
    assert fake_llm.requests == [{"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}]


async def test_stream_delivers_scripted_text_in_several_chunks_when_streaming(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.script(Reply.say("Hello there, friend."))

    stream = await client.chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    streamed = await collect(stream)

    assert (streamed.text, streamed.finish_reason, streamed.total_tokens) == ("Hello there, friend.", "stop", 15)
    assert streamed.content_chunks == 3
    assert fake_llm.requests[0]["stream"] is True
    assert fake_llm.requests[0]["messages"] == [{"role": "user", "content": "hi"}]


async def test_stream_reassembles_two_tool_calls_when_reply_calls_two_tools(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.script(
        Reply.call(ToolCallSpec("calculator__add", {"a": 2, "b": 3}, id="call_add"), ("weather__now", {"city": "Oslo"}))
    )

    streamed = await collect(await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))

    assert streamed.finish_reason == "tool_calls"
    assert streamed.total_tokens is None  # usage only when stream_options asks for it
    assert [(c.name, json.loads(c.arguments)) for c in streamed.calls.values()] == [
        ("calculator__add", {"a": 2, "b": 3}),
        ("weather__now", {"city": "Oslo"}),
    ]
    assert streamed.calls[0].id == "call_add"
    assert streamed.calls[1].id.startswith("call_") and streamed.calls[1].id != "call_add"


async def test_tool_call_arguments_arrive_verbatim_when_they_are_invalid_json(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    broken = '{"a": 1, "b":'
    fake_llm.script(Reply.call(("calculator__add", broken)), Reply.call(("calculator__add", broken)))

    completion = await client.chat.completions.create(model=MODEL, messages=HELLO)
    streamed = await collect(await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))

    [call] = completion.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.function.name, call.function.arguments) == ("calculator__add", broken)
    assert completion.choices[0].finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in streamed.calls.values()] == [("calculator__add", broken)]


@pytest.mark.parametrize("is_streaming", [False, True])
async def test_create_raises_rate_limit_error_with_retry_after_when_reply_is_429(
    fake_llm: FakeOpenAI, client: AsyncOpenAI, is_streaming: bool
) -> None:
    fake_llm.script(Reply.error(429, retry_after=1.5))

    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=HELLO, stream=is_streaming)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1.5"
    assert caught.value.body == {
        "message": "Scripted error 429.",
        "type": "requests",
        "param": None,
        "code": "scripted_error",
    }


async def test_create_raises_server_error_when_script_runs_out(fake_llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="script ran out"):
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert len(fake_llm.requests) == 1


async def test_responder_answers_when_queue_is_empty(fake_llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_llm.script(Reply.say("scripted"))
    fake_llm.responder = lambda request: Reply.say(f"echo {request['messages'][-1]['content']}")

    answers = [(await client.chat.completions.create(model=MODEL, messages=HELLO)).choices[0] for _ in range(2)]

    assert [a.message.content for a in answers] == ["scripted", "echo hi"]


async def test_hang_counts_a_disconnect_when_client_gives_up(fake_llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_llm.script(Reply(text="never", hang=True))

    with anyio.move_on_after(0.2) as scope:
        await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert scope.cancelled_caught
    await wait_until(lambda: fake_llm.disconnects == 1)


async def test_stream_counts_a_disconnect_when_client_closes_it_midway(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.script(Reply.say("one two three four five six", chunk_delay_s=5))

    stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with anyio.fail_after(5):
        async with stream:
            first = await anext(aiter(stream))

    assert first.choices[0].delta.role == "assistant"
    await wait_until(lambda: fake_llm.disconnects == 1)


async def test_disconnects_stay_zero_when_answers_complete(fake_llm: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_llm.script(Reply.say("a b c"), Reply.call(("calculator__add", {"a": 1, "b": 2})), Reply.error(503))

    await client.chat.completions.create(model=MODEL, messages=HELLO)
    await collect(await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=HELLO)
    await client.models.list()  # one more round trip: the server has finished with the earlier requests

    assert (len(fake_llm.requests), fake_llm.disconnects) == (3, 0)


async def test_requests_are_answered_concurrently_when_32_are_in_flight(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.script(*[Reply(hang=True) for _ in range(32)])

    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(lambda: client.chat.completions.create(model=MODEL, messages=HELLO))
        await wait_until(lambda: len(fake_llm.requests) == 32)  # all 32 are inside the server at once
        tg.cancel_scope.cancel()

    await wait_until(lambda: fake_llm.disconnects == 32)


async def test_answers_wait_until_that_many_requests_are_open_when_a_hold_is_set(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.responder = lambda _request: Reply.say("released")
    fake_llm.hold_answers_until_open(3)
    answers: list[str | None] = []

    async def ask() -> None:
        completion = await client.chat.completions.create(model=MODEL, messages=HELLO)
        answers.append(completion.choices[0].message.content)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            tg.start_soon(ask)
            await wait_until(lambda: fake_llm.open_requests == 2)  # answered at once, they would not stay open
            assert answers == []
            tg.start_soon(ask)
        await ask()  # once released, later requests are answered without waiting

    assert answers == ["released"] * 4
    assert fake_llm.open_requests == 0


async def test_requests_record_one_client_address_when_they_share_a_kept_alive_connection(
    fake_llm: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_llm.script(Reply.say("a b", end_delay_s=0.01), Reply.say("c"))

    streamed = await collect(await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    await client.chat.completions.create(model=MODEL, messages=HELLO)

    assert streamed.text == "a b"  # the body's end, sent late, still ends the stream
    [first, second] = fake_llm.client_addresses
    assert first == second
    assert first[0] == "127.0.0.1"


async def test_the_fake_process_answers_with_the_given_text_when_started_with_say() -> None:
    port = free_port()
    command = [sys.executable, "-m", "tests.support.fake_openai", "--port", str(port), "--say", "slow hello"]
    process = await anyio.open_process(
        [*command, "--delay-s", "0.01"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/v1/models", timeout_s=30)
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0) as sdk:
            completion = await sdk.chat.completions.create(model=MODEL, messages=HELLO)
            streamed = await collect(await sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True))
    finally:
        process.kill()
        with anyio.fail_after(10):
            await process.wait()

    assert (completion.choices[0].message.content, completion.choices[0].message.tool_calls) == ("slow hello", None)
    assert streamed.text == "slow hello"


@pytest.mark.parametrize("is_recording", [True, False], ids=["recording", "benchmark"])
async def test_calculator_responder_calls_add_then_answers_when_tool_result_comes_back(
    fake_llm: FakeOpenAI, client: AsyncOpenAI, is_recording: bool
) -> None:
    fake_llm.is_recording = is_recording  # not recording, the fake builds only the last message
    fake_llm.responder = calculator_responder
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "what is two plus three?"}]

    first = await client.chat.completions.create(model=MODEL, messages=messages)
    [call] = first.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.function.name, json.loads(call.function.arguments)) == ("calculator__add", {"a": 2, "b": 3})
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "calculator__add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "5"},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=messages)

    assert second.choices[0].message.content == "The answer is 5"
    assert second.choices[0].message.tool_calls is None


@pytest.mark.parametrize(
    "body",
    [b"[1]", b'{"model": "m"}', b'{"messages": []}', b'{"messages": [1]}', b'{"messages": [{}], "tools": [}'],
    ids=["array", "no-messages", "empty-messages", "message-not-object", "broken-json-in-skipped-field"],
)
async def test_benchmark_fake_answers_400_when_body_is_not_a_chat_request(fake_llm: FakeOpenAI, body: bytes) -> None:
    fake_llm.is_recording = False
    fake_llm.responder = calculator_responder
    headers = {"authorization": "Bearer test", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=fake_llm.base_url, timeout=10) as http:
        response = await http.post("/chat/completions", content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_calculator_responder_adds_the_message_numbers_when_it_has_some() -> None:
    reply = calculator_responder({"messages": [{"role": "user", "content": "add 7 and 3"}]})

    assert reply.tool_calls == [ToolCallSpec("calculator__add", {"a": 7, "b": 3})]


async def test_models_lists_one_model_when_asked(client: AsyncOpenAI) -> None:
    page = await client.models.list()

    assert [model.id for model in page.data] == [MODEL]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", "/v1/chat/completions", {}, 401, "invalid_api_key"),
        ("POST", "/v1/embeddings", {"authorization": "Bearer test"}, 404, "unknown_url"),
        ("GET", "/v1/chat/completions", {"authorization": "Bearer test"}, 404, "unknown_url"),
    ],
)
async def test_fake_answers_error_json_when_request_is_not_a_chat_completion(
    fake_llm: FakeOpenAI, method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    root = fake_llm.base_url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, timeout=10) as http:
        response = await http.request(method, path, json={"model": MODEL, "messages": []}, headers=headers)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert fake_llm.requests == []
