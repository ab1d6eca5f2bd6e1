"""Supervised stdio and HTTP connections: crashes, reconnects, in-flight failures, shutdown of process groups."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from backend.mcp.models import ServerStatus
from tests.support.app_runner import RunningApp, run_app
from tests.support.specs import calculator_spec, make_settings, testserver_spec
from tests.support.waiting import is_alive, wait_until


async def server_pid(app: RunningApp, name: str) -> int:
    pid = (await app.http.get(f"/v1/servers/{name}")).json()["pid"]
    assert isinstance(pid, int)
    return pid


async def test_stdio_server_reconnects_with_new_process_when_killed(app: RunningApp) -> None:
    old_pid = await server_pid(app, "test")
    os.kill(old_pid, signal.SIGKILL)
    await app.wait_for_status("test", ServerStatus.RECONNECTING)
    state = (await app.http.get("/v1/servers/test")).json()
    assert state["status"] in ("reconnecting", "ready")
    await app.wait_ready("test")
    new_pid = await server_pid(app, "test")
    assert new_pid != old_pid
    response = await app.http.post("/v1/tools/test__echo/call", json={"arguments": {"text": "back"}})
    assert response.json()["content"][0]["text"] == "back"


async def test_call_in_flight_fails_fast_with_503_when_server_dies(app: RunningApp) -> None:
    # timeout_s is 5 for the test server: an answer within the bound below proves it did not wait for it.
    with anyio.fail_after(4):
        response = await app.http.post("/v1/tools/test__crash/call", json={"arguments": {}})
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/mcp-server-unavailable"
    await app.wait_ready("test")


async def test_call_answers_503_when_server_is_not_ready(tmp_path: Path) -> None:
    specs = [testserver_spec("broken", "--fail-on-start", "cannot open the database")]
    async with run_app(make_settings(tmp_path), specs) as app:
        await app.wait_for_status("broken", ServerStatus.FAILED)
        state = (await app.http.get("/v1/servers/broken")).json()
        assert state["status"] == "failed"
        assert "cannot open the database" in state["error"]
        assert (await app.http.get("/v1/tools")).json()["items"] == []


async def test_failed_servers_do_not_block_others_or_readiness(tmp_path: Path) -> None:
    specs = [
        calculator_spec(),
        testserver_spec("broken", "--fail-on-start", "boom"),
        calculator_spec("missing", command=str(tmp_path / "no-such-binary")),
    ]
    async with run_app(make_settings(tmp_path), specs) as app:
        await app.wait_ready("calculator")
        await app.wait_for_status("broken", ServerStatus.FAILED)
        await app.wait_for_status("missing", ServerStatus.FAILED)
        ready = await app.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["servers"] == {"calculator": "ready", "broken": "failed", "missing": "failed"}
        missing = (await app.http.get("/v1/servers/missing")).json()
        assert "not found" in missing["error"]
        result = await app.http.post("/v1/tools/calculator__add/call", json={"arguments": {"a": 2, "b": 3}})
        assert result.json()["structured_content"] == {"result": 5}


async def test_disabled_and_misconfigured_servers_are_listed_without_tools(tmp_path: Path) -> None:
    specs = [
        calculator_spec(),
        calculator_spec("off", is_enabled=False),
        calculator_spec("noenv", config_error="environment variable(s) not set: API_TOKEN"),
    ]
    async with run_app(make_settings(tmp_path), specs) as app:
        await app.wait_ready("calculator")
        servers = {s["name"]: s for s in (await app.http.get("/v1/servers")).json()["items"]}
        assert servers["off"]["status"] == "disabled"
        assert servers["noenv"]["status"] == "failed"
        assert "API_TOKEN" in servers["noenv"]["error"]
        tools = (await app.http.get("/v1/tools")).json()["items"]
        assert {tool["server"] for tool in tools} == {"calculator"}
        off_call = await app.http.post("/v1/tools/off__add/call", json={"arguments": {"a": 1, "b": 1}})
        assert off_call.json()["type"] == "/problems/tool-not-found"


async def test_reconnect_endpoint_restarts_the_server(app: RunningApp) -> None:
    old_pid = await server_pid(app, "test")
    response = await app.http.post("/v1/servers/test/reconnect")
    assert response.status_code == 202
    await wait_until(lambda: not is_alive(old_pid))
    await app.wait_ready("test")
    assert await server_pid(app, "test") != old_pid


@pytest.mark.parametrize("extra_args", [(), ("--ignore-stdin-eof",)])
async def test_no_child_or_grandchild_survives_shutdown(tmp_path: Path, extra_args: tuple[str, ...]) -> None:
    async with run_app(make_settings(tmp_path), [testserver_spec("test", *extra_args)]) as app:
        await app.wait_ready("test")
        child = await server_pid(app, "test")
        response = await app.http.post("/v1/tools/test__spawn_grandchild/call", json={"arguments": {}})
        grandchild = int(response.json()["content"][0]["text"])
        assert is_alive(child) and is_alive(grandchild)
    # Shutdown returns only after the whole process group is gone.
    assert not is_alive(child)
    assert not is_alive(grandchild)


async def test_reconnect_endpoint_answers_409_when_server_is_disabled(tmp_path: Path) -> None:
    async with run_app(make_settings(tmp_path), [calculator_spec("off", is_enabled=False)]) as app:
        response = await app.http.post("/v1/servers/off/reconnect")
        assert response.status_code == 409
        assert "disabled" in response.json()["detail"]
        unknown = await app.http.post("/v1/servers/nobody/reconnect")
        assert unknown.json()["type"] == "/problems/mcp-server-not-found"


async def test_reconnect_endpoint_cuts_the_backoff_wait_short(tmp_path: Path) -> None:
    # A failed server waits up to reconnect_max_s between attempts; asking to reconnect starts one now.
    settings = make_settings(tmp_path, reconnect_initial_s=60, reconnect_max_s=60)
    async with run_app(settings, [testserver_spec("broken", "--fail-on-start", "boom")]) as app:
        await app.wait_for_status("broken", ServerStatus.FAILED)
        attempts = app.mcp.connection("broken").attempts
        assert (await app.http.post("/v1/servers/broken/reconnect")).status_code == 202
        await wait_until(lambda: app.mcp.connection("broken").attempts > attempts)
