"""A process killed mid-turn loses no stored message; a restart keeps conversations and the legacy history."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
from anyio.abc import Process

from tests.support.app_runner import all_messages
from tests.support.fake_openai import FakeOpenAI, Reply, ToolCallSpec
from tests.support.processes import free_port, wait_http_ok
from tests.support.specs import REPO_ROOT
from tests.support.waiting import wait_until


@asynccontextmanager
async def app_process(env: dict[str, str], port: int) -> AsyncIterator[tuple[Process, httpx.AsyncClient]]:
    process = await anyio.open_process(
        [sys.executable, "-m", "backend.cli", "serve"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=None,
        stderr=None,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        await wait_http_ok(f"{base_url}/readyz")
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
            yield process, http
    finally:
        if process.returncode is None:
            process.terminate()
            with anyio.fail_after(15):
                await process.wait()


async def test_killing_the_app_mid_turn_loses_no_stored_message(
    tmp_path: Path, marker_dir: Path, fake_llm: FakeOpenAI
) -> None:
    servers = {
        "test": {
            "command": sys.executable,
            "args": ["-m", "tests.support.mcp_test_server"],
            "cwd": str(REPO_ROOT),
            "env": {"TEST_SERVER_MARKER_DIR": str(marker_dir)},
        }
    }
    servers_file = tmp_path / "servers.json"
    servers_file.write_text(json.dumps({"mcpServers": servers}))
    port = free_port()
    env = {
        "MCPCHAT_ENV": "test",
        "MCPCHAT_PORT": str(port),
        "MCPCHAT_SERVERS_FILE": str(servers_file),
        "MCPCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'chat.db'}",
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "test-key",
    }
    async with app_process(env, port) as (process, http):
        fake_llm.script(Reply.say("remembered"))
        assert (await http.post("/api/chat", json={"message": "remember me"})).json()["response"] == "remembered"
        conversation_id = (await http.post("/v1/conversations", json={"title": "durable"})).json()["id"]
        fake_llm.script(Reply(text="Checking.", tool_calls=[ToolCallSpec("test__hang", {"seconds": 600})]))

        async def doomed_turn() -> None:
            url = f"/v1/conversations/{conversation_id}/messages"
            try:
                await http.post(url, json={"content": "please hang"})
            except httpx.TransportError:
                pass  # the app dies under it

        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed_turn)
            await wait_until(lambda: (marker_dir / "started-hang").exists())
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()

    async with app_process(env, port) as (_, http):
        conversation = (await http.get(f"/v1/conversations/{conversation_id}")).json()
        assert conversation["title"] == "durable"
        messages = await all_messages(http, conversation_id)
        assert [(m["role"], m["content"]) for m in messages] == [("user", "please hang"), ("assistant", "Checking.")]
        assert messages[1]["tool_calls"][0]["status"] == "interrupted"
        history = (await http.get("/api/history")).json()["history"]
        assert history == [{"role": "user", "content": "remember me"}, {"role": "assistant", "content": "remembered"}]
