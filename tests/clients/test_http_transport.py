"""Servers over Streamable HTTP on loopback: calls, and recovery when the server dies and comes back."""

from __future__ import annotations

from pathlib import Path

from backend.mcp.models import ServerStatus
from tests.support.app_runner import run_app
from tests.support.processes import free_port, http_server
from tests.support.specs import http_spec, make_settings


async def test_http_server_tools_run_and_recover_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    spec = http_spec("remote", f"http://127.0.0.1:{port}/mcp", call_timeout_s=5)
    with http_server("mcp_servers.calculator", port):
        async with run_app(make_settings(tmp_path), [spec]) as app:
            await app.wait_ready("remote")
            state = (await app.http.get("/v1/servers/remote")).json()
            assert (state["transport"], state["pid"], state["server_name"]) == ("http", None, "calculator")
            ok = await app.http.post("/v1/tools/remote__multiply/call", json={"arguments": {"a": 4, "b": 5}})
            assert ok.json()["structured_content"] == {"result": 20}
    # A new app against a dead server: it is failed, never blocks, and connects once the server appears.
    async with run_app(make_settings(tmp_path), [spec]) as app:
        await app.wait_for_status("remote", ServerStatus.FAILED)
        down = await app.http.post("/v1/tools/remote__add/call", json={"arguments": {"a": 1, "b": 1}})
        assert down.json()["type"] == "/problems/tool-not-found"
        with http_server("mcp_servers.calculator", port):
            await app.wait_ready("remote")
            up = await app.http.post("/v1/tools/remote__add/call", json={"arguments": {"a": 1, "b": 1}})
            assert up.json()["structured_content"] == {"result": 2}


async def test_http_server_death_fails_calls_fast_and_reconnects(tmp_path: Path) -> None:
    port = free_port()
    spec = http_spec("remote", f"http://127.0.0.1:{port}/mcp", call_timeout_s=5)
    async with run_app(make_settings(tmp_path), [spec]) as app:
        with http_server("tests.support.mcp_test_server", port):
            await app.wait_ready("remote")
            crash = await app.http.post("/v1/tools/remote__crash/call", json={"arguments": {}})
            assert crash.status_code == 503
            assert crash.json()["type"] == "/problems/mcp-server-unavailable"
            await app.wait_for_status("remote", ServerStatus.RECONNECTING)
        with http_server("tests.support.mcp_test_server", port):
            await app.wait_ready("remote")
            echo = await app.http.post("/v1/tools/remote__echo/call", json={"arguments": {"text": "again"}})
            assert echo.json()["content"][0]["text"] == "again"
