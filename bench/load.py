"""`python -m bench.load`: MCP Chat under load, in two scenarios (`--scenario`; `all`, the default, runs both).

mixed: a load as users drive it, with one MCP server killed mid-run. Several conversations stream turns over SSE
at once, other clients call tools and list them, one runs the test server's slow tool with progress, and halfway
through the test server is killed with SIGKILL (the supervisor restarts it). Reports errors (calls to the killed
server while it is down must fail fast and clean, with 503), p95 latency per kind, and that every stream ended
with `done`.

slow-model: `--turns` streamed turns at once (1,000) against a model that starts each answer `--model-delay-s`
late (4 s) and calls no tool, so the model's latency is all a turn needs. Reports what each turn took beyond it
(p50, p95, max), how many ended with `done`, errors, and the calls that waited for a free model connection (the
app's `llm.connection.waited` log lines).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from backend.cli import raise_open_files_limit
from bench.run import ROOT, Samples, Tree, fake_model_command, host_command, mcpchat_env, new_conversation, spawn
from tests.support.processes import free_port, wait_http_ok

FAST_FAILURE_S = 1.0
SLOW_MODEL_TEXT = "The slow model has answered."
CREATING_CONVERSATIONS = 50  # at once, before the turns start


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


@dataclass
class StreamedTurn:
    is_done: bool = False  # the stream ended with `done`
    text: str = ""  # the assistant's final text
    first_event_at: float | None = None  # perf_counter() when the first event came (the turn had started)
    first_delta_at: float | None = None  # and the first text from the model


async def stream_turn(http: httpx.AsyncClient, conversation_id: str, content: str) -> StreamedTurn:
    """One turn over SSE, read to its end."""
    turn = StreamedTurn()
    url = f"/v1/conversations/{conversation_id}/messages"
    try:
        async with http.stream(
            "POST", url, json={"content": content}, headers={"accept": "text/event-stream"}
        ) as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    turn.first_event_at = turn.first_event_at or time.perf_counter()
                    if event == "message.delta":
                        turn.first_delta_at = turn.first_delta_at or time.perf_counter()
                elif line.startswith("data: ") and event == "message.completed":
                    turn.text = json.loads(line.removeprefix("data: "))["content"]
                elif line.startswith("data: ") and event == "done":
                    turn.is_done = True
                    break
    except httpx.HTTPError:
        pass
    return turn


async def run_mixed(args: argparse.Namespace) -> dict[str, Any]:
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
                    streamed = await stream_turn(http, conversation, f"add {a} and 3")
                    tally.streams_done += streamed.is_done
                    if streamed.is_done and streamed.text.endswith(f"= {a + 3}"):
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


async def run_slow_model(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="mcpchat-load-"))
    fake_port, port = free_port(), free_port()
    (data_dir / "servers.json").write_text(json.dumps({"mcpServers": {}}))
    model = [*fake_model_command(fake_port), "--say", SLOW_MODEL_TEXT, "--delay-s", str(args.model_delay_s)]
    fake = spawn(model, {})
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    env = {
        **mcpchat_env(port, model_url, f"sqlite:///{data_dir / 'mcpchat.db'}"),
        "MCPCHAT_SERVERS_FILE": str(data_dir / "servers.json"),
    }
    if args.llm_max_connections is not None:
        env["MCPCHAT_LLM_MAX_CONNECTIONS"] = str(args.llm_max_connections)
    log_path = data_dir / "mcpchat.log"  # the app's warnings: the connection waits are counted from them
    app = spawn_logged(host_command("mcpchat", port, model_url), env, log_path)
    beyond_model = Samples()  # each turn's time less the model's delay
    to_first_event = Samples()  # from the request to the turn's first event, sent once it has started
    model_call = Samples()  # from there to the model's first text, less the model's delay
    wall_s = 0.0
    cpu_s: dict[str, float] = {}
    try:
        trees = {"app": Tree(app.pid), "model": Tree(fake.pid)}
        await wait_http_ok(f"http://127.0.0.1:{fake_port}/v1/models")
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        # The client must not be the bottleneck: a connection for every turn, as many browsers would have.
        limits = httpx.Limits(max_connections=args.turns, max_keepalive_connections=args.turns)
        timeout = httpx.Timeout(args.model_delay_s + 60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, limits=limits) as http:
            conversations: list[str] = []
            creating = anyio.CapacityLimiter(CREATING_CONVERSATIONS)

            async def create() -> None:
                async with creating:
                    try:
                        conversations.append(await new_conversation(http))
                    except httpx.HTTPError:
                        beyond_model.failures += 1  # a turn that cannot start

            async with anyio.create_task_group() as tg:
                for _ in range(args.turns):
                    tg.start_soon(create)

            async def turn(conversation_id: str) -> None:
                started = time.perf_counter()
                streamed = await stream_turn(http, conversation_id, "hello")
                ended = time.perf_counter()
                if not (streamed.is_done and streamed.text == SLOW_MODEL_TEXT):
                    beyond_model.failures += 1
                    return
                beyond_model.latencies_ms.append((ended - started - args.model_delay_s) * 1000)
                if streamed.first_event_at is not None and streamed.first_delta_at is not None:
                    to_first_event.latencies_ms.append((streamed.first_event_at - started) * 1000)
                    model_call.latencies_ms.append(
                        (streamed.first_delta_at - streamed.first_event_at - args.model_delay_s) * 1000
                    )

            # What each process spent while the turns ran: on a small machine, they share its cores.
            cpu_before_s = {name: tree.cpu_s() for name, tree in trees.items()}
            client_cpu_before_s = time.process_time()
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for conversation_id in conversations:
                    tg.start_soon(turn, conversation_id)
            wall_s = time.perf_counter() - started
            cpu_s = {name: round(tree.cpu_s() - cpu_before_s[name], 2) for name, tree in trees.items()}
            cpu_s["client"] = round(time.process_time() - client_cpu_before_s, 2)
    finally:
        for process in (app, fake):
            process.terminate()
            process.wait(timeout=15)
    log_lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    waits = [line for line in log_lines if line.get("event") == "llm.connection.waited"]
    return {
        "turns": args.turns,
        "model_delay_s": args.model_delay_s,
        "llm_max_connections": args.llm_max_connections or "the app's default",
        "turns_ended_with_done": len(beyond_model.latencies_ms),
        "errors": beyond_model.failures,
        "wall_s": round(wall_s, 2),
        "cpu_s": cpu_s,
        "beyond_model_delay_ms": _spread(beyond_model),
        "of_which_to_first_event_ms": _spread(to_first_event),
        "of_which_model_call_beyond_delay_ms": _spread(model_call),
        "llm_connection_waits": len(waits),
        "llm_connection_waited_ms_max": max((line["waited_ms"] for line in waits), default=0),
        "app_log_errors": sum(line.get("level") == "error" for line in log_lines),
    }


def _spread(samples: Samples) -> dict[str, float]:
    return {
        "p50": round(samples.p(0.5), 1),
        "p95": round(samples.p(0.95), 1),
        "max": round(max(samples.latencies_ms, default=float("nan")), 1),
    }


def spawn_logged(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a process as `spawn` does, its stderr (where MCP Chat logs) written to `log_path`."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log_file)


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], int, bool]:
    """The chosen scenarios' results, their errors, and whether all went well (every stream ended with `done`,
    and the slow-model app logged no error)."""
    results: dict[str, Any] = {}
    errors, is_ok = 0, True
    if args.scenario in ("mixed", "all"):
        mixed = results["mixed"] = await run_mixed(args)
        errors += sum(kind["failures"] for kind in mixed["kinds"].values())
        is_ok = mixed["streams_started"] == mixed["streams_ended_with_done"]
    if args.scenario in ("slow-model", "all"):
        slow = results["slow_model"] = await run_slow_model(args)
        errors += slow["errors"]
        is_ok = is_ok and slow["turns_ended_with_done"] == slow["turns"] and not slow["app_log_errors"]
    return results, errors, is_ok and not errors


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=["mixed", "slow-model", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=30, help="mixed: how long")
    parser.add_argument("--streams", type=int, default=6, help="mixed: conversations streaming turns at once")
    parser.add_argument("--turns", type=int, default=1000, help="slow-model: streamed turns at once")
    parser.add_argument("--model-delay-s", type=float, default=4.0, help="slow-model: the model's delay per answer")
    parser.add_argument(
        "--llm-max-connections", type=int, help="slow-model: MCPCHAT_LLM_MAX_CONNECTIONS (default: the app's)"
    )
    args = parser.parse_args()
    # Children inherit it: the fake model holds as many connections as the app, and this client as many again.
    raise_open_files_limit()
    results, errors, is_ok = anyio.run(run, args)
    sys.stdout.write(json.dumps(results, indent=2) + f"\nerrors: {errors}\n")
    sys.exit(0 if is_ok else 1)


if __name__ == "__main__":
    cli()
