"""The edge guard: a request for a foreign Host is refused, and so is a state-changing one from a foreign Origin;
every answer carries the security headers.

A refused request never reaches a route: the test server writes `request-tools-call` to the marker directory for
every tool call that reaches it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.problems import assert_problem
from tests.support.specs import make_settings, testserver_spec

TOOL_CALL_MARKER = "request-tools-call"
ATTACKER = "https://attacker.example"


@pytest.fixture
async def guarded(tmp_path: Path, marker_dir: Path) -> AsyncIterator[RunningApp]:
    """The app with the test server, chat.example in MCPCHAT_ALLOWED_HOSTS, https://ui.example in
    MCPCHAT_CORS_ORIGINS."""
    settings = make_settings(tmp_path, allowed_hosts=["chat.example"], cors_origins=["https://ui.example"])
    async with run_app(settings, [testserver_spec(env={"TEST_SERVER_MARKER_DIR": str(marker_dir)})]) as running:
        await running.wait_ready("test")
        yield running


async def echo(app: RunningApp, headers: dict[str, str]) -> httpx.Response:
    """Call the test server's echo tool with `headers` on top of the client's own (Host: 127.0.0.1:<port>)."""
    return await app.http.post("/v1/tools/test__echo/call", json={"arguments": {"text": "ran"}}, headers=headers)


def port_of(app: RunningApp) -> int:
    port = httpx.URL(app.base_url).port
    assert port is not None
    return port


async def test_tool_call_is_refused_with_400_and_never_runs_when_host_is_foreign(
    guarded: RunningApp, marker_dir: Path
) -> None:
    refused = await echo(guarded, {"host": f"attacker.example:{port_of(guarded)}"})
    assert_problem(refused, 400, "/problems/host-not-allowed", "'attacker.example'", "MCPCHAT_ALLOWED_HOSTS")
    assert not (marker_dir / TOOL_CALL_MARKER).exists()
    # The marker does show a call that gets through.
    assert (await echo(guarded, {})).status_code == 200
    assert (marker_dir / TOOL_CALL_MARKER).exists()


@pytest.mark.parametrize(
    ("allowed", "foreign"),
    [
        ("chat.example", "chat.example.attacker.example"),
        ("CHAT.Example:8443", "evil-chat.example:8443"),
        ("[::1]:{port}", "[::2]:{port}"),
        ("localhost:{port}", "localhost.attacker.example:{port}"),
        ("127.0.0.2:{port}", "128.0.0.1:{port}"),
    ],
)
async def test_tool_call_runs_when_host_is_loopback_or_allowed_and_is_refused_when_host_is_next_to_it(
    guarded: RunningApp, allowed: str, foreign: str
) -> None:
    port = port_of(guarded)
    answered = await echo(guarded, {"host": allowed.format(port=port)})
    assert answered.status_code == 200, answered.text
    assert answered.json()["content"][0]["text"] == "ran"
    refused = await echo(guarded, {"host": foreign.format(port=port)})
    assert_problem(refused, 400, "/problems/host-not-allowed")


async def test_request_is_refused_with_400_when_it_names_no_host(guarded: RunningApp) -> None:
    empty = await guarded.http.get("/v1/tools", headers={"host": ""})
    assert_problem(empty, 400, "/problems/host-not-allowed", "names no host")
    # HTTP/1.0 may leave Host out altogether; httpx always sends one.
    raw = b""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port_of(guarded)) as stream:
            await stream.send(b"GET /v1/tools HTTP/1.0\r\n\r\n")
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    raw += await stream.receive()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400"
    assert json.loads(body)["type"] == "/problems/host-not-allowed"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "type_"),
    [
        ("GET", "/api/tools", {"host": "attacker.example"}, 400, "/problems/host-not-allowed"),
        ("POST", "/api/clear", {"origin": ATTACKER}, 403, "/problems/origin-not-allowed"),
    ],
)
async def test_legacy_route_refusal_carries_error_when_host_or_origin_is_foreign(
    guarded: RunningApp, method: str, path: str, headers: dict[str, str], status: int, type_: str
) -> None:
    response = await guarded.http.request(method, path, headers=headers)
    body = assert_problem(response, status, type_)
    assert body["error"] == body["detail"]


@pytest.mark.parametrize("origin", [ATTACKER, "null", "http://127.0.0.1:1"])
async def test_tool_call_is_refused_with_403_and_never_runs_when_origin_is_foreign(
    guarded: RunningApp, marker_dir: Path, origin: str
) -> None:
    refused = await echo(guarded, {"origin": origin})
    assert_problem(refused, 403, "/problems/origin-not-allowed", repr(origin), "MCPCHAT_CORS_ORIGINS")
    assert not (marker_dir / TOOL_CALL_MARKER).exists()


async def test_conversation_is_kept_when_a_foreign_origin_deletes_it(guarded: RunningApp) -> None:
    conversation_id = await guarded.new_conversation()
    refused = await guarded.http.delete(f"/v1/conversations/{conversation_id}", headers={"origin": ATTACKER})
    assert_problem(refused, 403, "/problems/origin-not-allowed", "A DELETE")
    assert (await guarded.http.get(f"/v1/conversations/{conversation_id}")).status_code == 200


@pytest.mark.parametrize("origin", ["{own}", "https://ui.example", "HTTPS://UI.example"])
async def test_tool_call_runs_when_origin_is_own_or_a_cors_origin_and_is_refused_when_origin_is_foreign(
    guarded: RunningApp, origin: str
) -> None:
    answered = await echo(guarded, {"origin": origin.format(own=guarded.base_url)})
    assert answered.status_code == 200, answered.text
    refused = await echo(guarded, {"origin": ATTACKER})
    assert_problem(refused, 403, "/problems/origin-not-allowed")


async def test_read_is_answered_from_a_foreign_origin_whose_write_is_refused(guarded: RunningApp) -> None:
    read = await guarded.http.get("/v1/tools", headers={"origin": ATTACKER})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers  # CORS keeps the answer from the foreign page
    write = await echo(guarded, {"origin": ATTACKER})
    assert_problem(write, 403, "/problems/origin-not-allowed")


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [("/v1/tools", {}, 200), ("/nowhere", {}, 404), ("/v1/tools", {"host": "attacker.example"}, 400)],
    ids=["json", "not-found-problem", "guard-problem"],
)
async def test_security_headers_are_on_every_answer_and_the_framing_policy_only_on_pages(
    guarded: RunningApp, path: str, headers: dict[str, str], status: int
) -> None:
    response = await guarded.http.get(path, headers=headers)
    assert response.status_code == status
    assert_security_headers(response)
    assert "content-security-policy" not in response.headers


async def test_security_headers_are_on_a_streamed_turn(chat_app: RunningApp, fake_llm: FakeOpenAI) -> None:
    fake_llm.script(Reply.say("hello"))
    url = f"/v1/conversations/{await chat_app.new_conversation()}/messages"
    headers = {"accept": "text/event-stream"}
    async with chat_app.http.stream("POST", url, json={"content": "hi"}, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert_security_headers(response)
        assert b"event: done" in await response.aread()


async def test_docs_page_may_not_be_framed_by_another_site(guarded: RunningApp) -> None:
    docs = await guarded.http.get("/docs")
    assert docs.headers["content-type"].startswith("text/html")
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert_security_headers(docs)
