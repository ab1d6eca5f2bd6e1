"""`python -m bench.load`: a mixed load against MCP Chat as users drive it, with one MCP server killed mid-run.

Several conversations stream turns over SSE at once, other clients call tools and list them, one runs the test
server's slow tool with progress, and halfway through the test server is killed with SIGKILL (the supervisor
restarts it). Reports errors (calls to the killed server while it is down must fail fast and clean, with 503),
p95 latency per kind, and that every stream ended with `done`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.run import ROOT, Samples, fake_model_command, host_command, mcpchat_env, spawn
from tests.support.processes import free_port, wait_http_ok

FAST_FAILURE_S = 1.0


class Tally:
    def __init__(self) -> None:
        self.samples: dict[str, Samples] = defaultdict(Samples)
        self.expected_failures = 0  # 503s from the killed server while it was down, answered fast
        self.streams = 0
        self.streams_done = 0

    def ok(self, kind: str, started: float) -> None:
        self.samples[kind].latencies_ms.append((time.perf_counter() - started) * 1000)

    def failed(self, kind: str) -> None:
        self.samples[kind].failures += 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="mcpchat-load-"))
    fake_port, port = free_port(), free_port()
    servers = {
        "calculator": {"command": sys.executable, "args": ["-m", "mcp_servers.calculator"], "cwd": str(ROOT)},
        "test": {
            "command": sys.executable,
            "args": ["-m", "tests.support.mcp_test_server"],
            "cwd": str(ROOT),
            "env": {"TEST_SERVER_MARKER_DIR": str(data_dir)},
        },
    }
    (data_dir / "servers.json").write_text(json.dumps({"mcpServers": servers}))
    fake = spawn(fake_model_command(fake_port), {})
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    env = {
        **mcpchat_env(port, model_url, f"sqlite:///{data_dir / 'mcpchat.db'}"),
        "MCPCHAT_SERVERS_FILE": str(data_dir / "servers.json"),
    }
    app = spawn(host_command("mcpchat", port, model_url), env)
    tally = Tally()
    killed_at: list[float] = []
    back_at: list[float] = []
    try:
        await wait_http_ok(f"http://127.0.0.1:{fake_port}/v1/models")
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http:
            deadline = time.perf_counter() + args.seconds

            def is_server_down() -> bool:
                return bool(killed_at) and not back_at

            async def streamer(number: int) -> None:
                conversation = (await http.post("/v1/conversations", json={"title": f"load {number}"})).json()["id"]
                for turn in itertools.count():
                    if time.perf_counter() >= deadline:
                        return
                    a = number * 100_000 + turn
                    started = time.perf_counter()
                    tally.streams += 1
                    text, is_done = "", False
                    url = f"/v1/conversations/{conversation}/messages"
                    try:
                        async with http.stream(
                            "POST", url, json={"content": f"add {a} and 3"}, headers={"accept": "text/event-stream"}
                        ) as response:
                            event = ""
                            async for line in response.aiter_lines():
                                if line.startswith("event: "):
                                    event = line.removeprefix("event: ")
                                elif line.startswith("data: ") and event == "message.completed":
                                    text = json.loads(line.removeprefix("data: "))["content"]
                                elif line.startswith("data: ") and event == "done":
                                    is_done = True
                                    break
                    except httpx.HTTPError:
                        pass
                    tally.streams_done += is_done
                    if is_done and text.endswith(f"= {a + 3}"):
                        tally.ok("sse_turn", started)
                    else:
                        tally.failed("sse_turn")

            async def caller(kind: str, path: str, body: dict[str, Any] | None) -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        response = await (http.post(path, json=body) if body is not None else http.get(path))
                    except httpx.HTTPError:
                        tally.failed(kind)
                        continue
                    elapsed = time.perf_counter() - started
                    if response.status_code == 200 and not (body and response.json().get("is_error")):
                        tally.ok(kind, started)
                    elif (
                        response.status_code == 503
                        and path.startswith("/v1/tools/test__")
                        and elapsed < FAST_FAILURE_S
                        and (is_server_down() or kind == "slow_tool")
                    ):
                        tally.expected_failures += 1
                    elif response.status_code == 404 and is_server_down() and path.startswith("/v1/tools/test__"):
                        tally.expected_failures += 1  # its tools are gone from the catalog while it restarts
                    else:
                        tally.failed(kind)
                    if kind == "slow_tool" or is_server_down():
                        await anyio.sleep(0.05)

            async def killer() -> None:
                await anyio.sleep(args.seconds / 2)
                pid = (await http.get("/v1/servers/test")).json()["pid"]
                os.kill(pid, signal.SIGKILL)
                killed_at.append(time.perf_counter())
                while True:
                    state = (await http.get("/v1/servers/test")).json()
                    if state["status"] == "ready" and state["pid"] != pid:
                        break
                    await anyio.sleep(0.05)
                back_at.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                for number in range(args.streams):
                    tg.start_soon(streamer, number)
                tg.start_soon(caller, "tool_call", "/v1/tools/calculator__add/call", {"arguments": {"a": 1, "b": 2}})
                tg.start_soon(caller, "test_tool", "/v1/tools/test__echo/call", {"arguments": {"text": "hi"}})
                tg.start_soon(caller, "list_tools", "/v1/tools", None)
                tg.start_soon(
                    caller, "slow_tool", "/v1/tools/test__progress/call", {"arguments": {"steps": 5, "delay_s": 0.1}}
                )
                tg.start_soon(killer)
    finally:
        for process in (app, fake):
            process.terminate()
            process.wait(timeout=15)
    return {
        "seconds": args.seconds,
        "streams_started": tally.streams,
        "streams_ended_with_done": tally.streams_done,
        "expected_fast_failures_while_down": tally.expected_failures,
        "restart_s": round(back_at[0] - killed_at[0], 2) if back_at else None,
        "kinds": {kind: s.summary() for kind, s in tally.samples.items()},
    }


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--streams", type=int, default=6, help="conversations streaming turns at once")
    args = parser.parse_args()
    result = anyio.run(run, args)
    errors = sum(kind["failures"] for kind in result["kinds"].values())
    sys.stdout.write(json.dumps(result, indent=2) + f"\nerrors: {errors}\n")
    sys.exit(1 if errors or result["streams_started"] != result["streams_ended_with_done"] else 0)


if __name__ == "__main__":
    cli()
