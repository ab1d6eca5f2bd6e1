"""`make bench`: MCP Chat against the floor (bench/floor.py) and the direct SDK, side by side in one run.

Starts a zero-latency fake OpenAI server, MCP Chat exactly as `make run` does (SQLite, the bundled calculator
over stdio) and the floor, drives both with the same client and the same answer checks, prints a markdown
table and writes bench/results/<date>.json. Everything on 127.0.0.1. With `--database-url`, MCP Chat runs on
that PostgreSQL server instead (the floor has no database), in a new database of its own, and the results go to
bench/results/<date>-postgresql.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
from mcp import Client, StdioServerParameters
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from backend.db.database import async_url
from tests.support.processes import free_port, wait_http_ok

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTION_TURNS, INSTRUCTION_PREFILL = 100, 100  # bench.instructions: turns counted, after this many
RESULTS = ROOT / "bench" / "results"


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def p(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.p(0.5), 3),
            "p95_ms": round(self.p(0.95), 3),
            "n": len(self.latencies_ms),
            "failures": self.failures,
        }


class Tree:
    """A process and its descendants: CPU seconds, RSS, child count."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_children = 0

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for process in self.processes():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss(self) -> int:
        total = 0
        for process in self.processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.rss())
        self.peak_children = max(self.peak_children, len(self.processes()) - 1)


def mcpchat_env(port: int, model_url: str, database_url: str) -> dict[str, str]:
    """The environment `mcpchat serve` runs with in every benchmark: `make run`'s defaults, quiet, this model."""
    return {
        "MCPCHAT_PORT": str(port),
        "MCPCHAT_ENV": "prod",
        "MCPCHAT_AUTH": "single-user",  # prod's default, multi-user, is not built yet
        "MCPCHAT_LOG_LEVEL": "warning",
        "OPENAI_BASE_URL": model_url,
        "OPENAI_API_KEY": "bench",
        "MCPCHAT_DATABASE_URL": database_url,
    }


def database_kind(server_url: str | None) -> str:
    """What `scratch_database` makes for `server_url`: "sqlite" (None) or the URL's scheme ("postgresql")."""
    return "sqlite" if server_url is None else make_url(server_url).get_backend_name()


def postgresql_server(url: str) -> str:
    """`--database-url`, checked: a PostgreSQL server's URL (SQLite needs none: it is the default)."""
    if not url.startswith(("postgresql://", "postgresql+asyncpg://")):
        raise argparse.ArgumentTypeError(f"{url!r} is not a postgresql:// URL; leave it out for SQLite")
    return url


@asynccontextmanager
async def scratch_database(server_url: str | None) -> AsyncIterator[str]:
    """The URL of a new, empty database for one run, removed when the block ends: a SQLite file (`server_url`
    None) or a database of its own on the server at `server_url`. Never the database that URL names: every run
    starts empty, as on SQLite, and the tests drop their tables in the one they are given."""
    if server_url is None:
        folder = Path(tempfile.mkdtemp(prefix="mcpchat-bench-"))
        try:
            yield f"sqlite:///{folder / 'mcpchat.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"mcpchat_bench_{uuid.uuid4().hex[:12]}"
    await _run_outside_transaction(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a host that did not stop in time still holds connections to it.
        await _run_outside_transaction(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _run_outside_transaction(server_url: str, statement: str) -> None:
    # CREATE and DROP DATABASE refuse to run inside a transaction block.
    engine = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def fake_model_command(port: int) -> list[str]:
    """The fake OpenAI server serving the calculator script on `port`, as every benchmark runs it."""
    return [sys.executable, "-m", "tests.support.fake_openai", "--port", str(port)]


def host_command(host: str, port: int, model_url: str) -> list[str]:
    """How to start `host` ("mcpchat", as `make run` does, or "floor") on `port`."""
    if host == "floor":
        return [sys.executable, "-m", "bench.floor", "--port", str(port), "--model-url", model_url]
    return [str(ROOT / ".venv" / "bin" / "mcpchat"), "serve"]


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def timed(samples: Samples, call: Callable[[], Awaitable[bool]]) -> None:
    started = time.perf_counter()
    try:
        ok = await call()
    except (httpx.HTTPError, OSError):
        ok = False
    if ok:
        samples.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        samples.failures += 1


Call = Callable[[], Awaitable[bool]]

# This VM's speed drifts by up to 1.7x from one minute to the next (the floor alone: 180 to 320 turns/s), so hosts
# compared in one run take turns in short blocks: a slow minute slows each of them alike.
BLOCK_CALLS = 25
CONCURRENCY_SLICES = 6


async def sequential(n: int, call: Call) -> Samples:
    samples = Samples()
    for _ in range(n):
        await timed(samples, call)
    return samples


async def interleaved(
    n: int, calls: dict[str, Call], trees: dict[str, Tree] | None = None
) -> tuple[dict[str, Samples], dict[str, float]]:
    """`n` sequential calls of each of `calls`, taking turns BLOCK_CALLS at a time; and the CPU seconds each
    call's process tree (in `trees`, by the same name) spent during its own blocks."""
    samples = {name: Samples() for name in calls}
    cpu_s = dict.fromkeys(calls, 0.0)
    done = 0
    while done < n:
        size = min(BLOCK_CALLS, n - done)
        for name, call in calls.items():
            tree = (trees or {}).get(name)
            before = tree.cpu_s() if tree is not None else 0.0
            for _ in range(size):
                await timed(samples[name], call)
            if tree is not None:
                cpu_s[name] += tree.cpu_s() - before
        done += size
    return samples, cpu_s


async def concurrent(clients: int, seconds: float, call: Call) -> dict[str, float]:
    samples, elapsed_s = await _concurrent_samples(clients, seconds, call)
    return {**samples.summary(), "throughput_per_s": round(len(samples.latencies_ms) / elapsed_s, 1)}


async def interleaved_concurrent(clients: int, seconds: float, calls: dict[str, Call]) -> dict[str, dict[str, float]]:
    """`clients` concurrent callers of each of `calls` for `seconds` in all, taking turns CONCURRENCY_SLICES times."""
    merged = {name: (Samples(), [0.0]) for name in calls}
    for _ in range(CONCURRENCY_SLICES):
        for name, call in calls.items():
            samples, elapsed_s = await _concurrent_samples(clients, seconds / CONCURRENCY_SLICES, call)
            total, elapsed = merged[name]
            total.latencies_ms += samples.latencies_ms
            total.failures += samples.failures
            elapsed[0] += elapsed_s
    return {
        name: {**total.summary(), "throughput_per_s": round(len(total.latencies_ms) / elapsed[0], 1)}
        for name, (total, elapsed) in merged.items()
    }


async def _concurrent_samples(clients: int, seconds: float, call: Call) -> tuple[Samples, float]:
    samples = Samples()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await timed(samples, call)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(worker)
    return samples, time.perf_counter() - started


_numbers = itertools.count(10)


def chat_call(http: httpx.AsyncClient, path: str = "/api/chat") -> Callable[[], Awaitable[bool]]:
    """One turn with its own numbers; the check catches errors and any answer that is not this turn's."""

    async def call() -> bool:
        a = next(_numbers)
        response = await http.post(path, json={"message": f"use a tool: add {a} and 3"})
        if response.status_code != 200:
            return False
        body = response.json()
        calls = body["tool_calls"]
        return (
            len(calls) == 1
            and calls[0]["name"] == "calculator__add"
            and body["response"] == f"The answer is {a} + 3 = {a + 3}"
        )

    return call


async def v1_turn(http: httpx.AsyncClient, conversation_id: str) -> bool:
    a = next(_numbers)
    url = f"/v1/conversations/{conversation_id}/messages"
    response = await http.post(url, json={"content": f"add {a} and 3"})
    return response.status_code == 200 and response.json()["message"]["content"].endswith(f"= {a + 3}")


async def new_conversation(http: httpx.AsyncClient) -> str:
    return str((await http.post("/v1/conversations", json={})).json()["id"])


async def route_call(http: httpx.AsyncClient, route: str) -> Callable[[], Awaitable[bool]]:
    """Turns through /api/chat ("legacy") or, in a new conversation of their own, v1 messages ("v1")."""
    if route == "legacy":
        return chat_call(http)
    conversation_id = await new_conversation(http)

    async def call() -> bool:
        return await v1_turn(http, conversation_id)

    return call


async def sse_first_delta_ms(http: httpx.AsyncClient, conversation_id: str) -> float | None:
    started = time.perf_counter()
    url = f"/v1/conversations/{conversation_id}/messages"
    first: float | None = None
    async with http.stream("POST", url, json={"content": "add 1 and 3"}, headers={"accept": "text/event-stream"}) as r:
        # Read to the stream's end, as a browser does: leaving it unread made httpx close the connection, and
        # the next turn paid for a new one (0.6-1 ms of its first delta).
        async for line in r.aiter_lines():
            if first is None and line == "event: message.delta":
                first = (time.perf_counter() - started) * 1000
    return first


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_database(args.database_url) as database_url:
        return await run_hosts(args, database_url)


async def run_hosts(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    fake_port, chat_port, floor_port = free_port(), free_port(), free_port()
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    fake = spawn(fake_model_command(fake_port), {})
    processes = [fake]
    out: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_avg_at_start": load_at_start},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database_kind(args.database_url),
    }
    try:
        await wait_http_ok(f"{model_url}/models")
        started = time.perf_counter()
        chat_env = mcpchat_env(chat_port, model_url, database_url)
        chat = spawn(host_command("mcpchat", chat_port, model_url), chat_env)
        processes.append(chat)
        await wait_http_ok(f"http://127.0.0.1:{chat_port}/readyz", timeout_s=60)
        cold_chat = time.perf_counter() - started
        started = time.perf_counter()
        floor = spawn(host_command("floor", floor_port, model_url), {})
        processes.append(floor)
        await wait_http_ok(f"http://127.0.0.1:{floor_port}/readyz", timeout_s=60)
        cold_floor = time.perf_counter() - started
        out["cold_start_s"] = {"mcpchat": round(cold_chat, 3), "floor": round(cold_floor, 3)}
        trees = {"mcpchat": Tree(chat.pid), "floor": Tree(floor.pid)}

        async def sample_forever() -> None:
            while True:
                for tree in trees.values():
                    tree.sample()
                await anyio.sleep(0.25)

        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            anyio.create_task_group() as sampler,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{chat_port}", timeout=30, limits=limits) as mc,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{floor_port}", timeout=30, limits=limits) as fl,
        ):
            sampler.start_soon(sample_forever)
            out.update(await measure(args, mc, fl, trees))
            sampler.cancel_scope.cancel()
        out["peak_rss_mb"] = {name: round(tree.peak_rss / 2**20, 1) for name, tree in trees.items()}
        out["peak_children"] = {name: tree.peak_children for name, tree in trees.items()}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    return out


async def measure(
    args: argparse.Namespace, mc: httpx.AsyncClient, fl: httpx.AsyncClient, trees: dict[str, Tree]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = args.n

    async def mc_tool() -> bool:
        r = await mc.post("/v1/tools/calculator__add/call", json={"arguments": {"a": 2, "b": 3}})
        return r.status_code == 200 and r.json()["structured_content"] == {"result": 5}

    async def fl_tool() -> bool:
        r = await fl.post("/tools/add/call", json={"arguments": {"a": 2, "b": 3}})
        return r.status_code == 200 and r.json()["structured_content"] == {"result": 5}

    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_servers.calculator"], cwd=str(ROOT))
    async with Client(params, mode="auto", read_timeout_seconds=60) as client:
        await client.list_tools()

        async def direct() -> bool:
            result = await client.call_tool("add", {"a": 2, "b": 3})
            return bool(result.structured_content == {"result": 5})

        tool_calls, _ = await interleaved(n, {"mcpchat": mc_tool, "floor": fl_tool, "direct_sdk": direct})
        out["tool_call"] = {name: samples.summary() for name, samples in tool_calls.items()}

    async def listing(http: httpx.AsyncClient, path: str) -> bool:
        return (await http.get(path)).status_code == 200

    listings, _ = await interleaved(
        n,
        {
            "mcpchat_v1": lambda: listing(mc, "/v1/tools"),
            "mcpchat_api": lambda: listing(mc, "/api/tools"),
            "floor": lambda: listing(fl, "/api/tools"),
        },
    )
    out["list_tools"] = {name: samples.summary() for name, samples in listings.items()}
    turns = args.turns
    # Each kind of turn in a conversation of its own, as the legacy route's: each history grows to `turns`.
    v1_call, streamed = await route_call(mc, "v1"), await new_conversation(mc)
    first_deltas = Samples()

    async def sse_turn() -> bool:
        first_ms = await sse_first_delta_ms(mc, streamed)
        if first_ms is None:
            first_deltas.failures += 1
            return False
        first_deltas.latencies_ms.append(first_ms)
        return True

    # A fresh conversation per turn: the same turn without the history the legacy conversation carries.
    fresh = iter([await new_conversation(mc) for _ in range(turns)])
    chat, cpu_s = await interleaved(
        turns,
        {
            "mcpchat": chat_call(mc),
            "floor": chat_call(fl),
            "v1": v1_call,
            "v1_fresh": lambda: v1_turn(mc, next(fresh)),
            "sse": sse_turn,
        },
        trees,
    )
    out["chat_turn"] = {"mcpchat": chat["mcpchat"].summary(), "floor": chat["floor"].summary()}
    out["cpu_ms_per_turn"] = {name: round(cpu_s[name] / turns * 1000, 3) for name in ("mcpchat", "floor")}
    out["v1_turn"] = chat["v1"].summary()
    out["v1_turn_fresh"] = chat["v1_fresh"].summary()
    out["sse_first_delta_ms"] = first_deltas.summary()
    out["concurrency"] = {}
    for clients in (8, 32):
        out["concurrency"][clients] = await interleaved_concurrent(
            clients, args.seconds, {"mcpchat": chat_call(mc), "floor": chat_call(fl)}
        )
    soak: list[float] = []
    done = 0
    while done < args.soak:
        batch = min(1000, args.soak - done)
        samples = Samples()
        call = chat_call(mc)
        queue = iter(range(batch))

        async def worker(
            call: Callable[[], Awaitable[bool]] = call, samples: Samples = samples, queue: Any = queue
        ) -> None:
            for _ in queue:
                await timed(samples, call)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(worker)
        done += batch
        soak.append(round(trees["mcpchat"].rss() / 2**20, 1))
        out.setdefault("soak_failures", 0)
        out["soak_failures"] += samples.failures
    out["soak_rss_mb"] = soak
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(r: dict[str, Any]) -> str:
    rows = [("metric", f"MCP Chat ({r.get('database', 'sqlite')})", "floor", "ratio")]

    def add(label: str, a: float, b: float) -> None:
        rows.append((label, f"{a:g}", f"{b:g}", ratio(a, b)))

    tc = r["tool_call"]
    add("tool call p50 ms (floor: its /tools route)", tc["mcpchat"]["p50_ms"], tc["floor"]["p50_ms"])
    add("tool call p95 ms", tc["mcpchat"]["p95_ms"], tc["floor"]["p95_ms"])
    add("tool call p50 ms vs direct SDK call_tool", tc["mcpchat"]["p50_ms"], tc["direct_sdk"]["p50_ms"])
    lt = r["list_tools"]
    add("GET /v1/tools p50 ms", lt["mcpchat_v1"]["p50_ms"], lt["floor"]["p50_ms"])
    add("GET /api/tools p50 ms", lt["mcpchat_api"]["p50_ms"], lt["floor"]["p50_ms"])
    ct = r["chat_turn"]
    add("chat turn /api/chat p50 ms", ct["mcpchat"]["p50_ms"], ct["floor"]["p50_ms"])
    add("chat turn /api/chat p95 ms", ct["mcpchat"]["p95_ms"], ct["floor"]["p95_ms"])
    add("chat turn v1 JSON p50 ms (vs floor turn)", r["v1_turn"]["p50_ms"], ct["floor"]["p50_ms"])
    add("v1 SSE first delta p50 ms (vs floor turn)", r["sse_first_delta_ms"]["p50_ms"], ct["floor"]["p50_ms"])
    add("v1 JSON, new conversation (no history) p50 ms", r["v1_turn_fresh"]["p50_ms"], ct["floor"]["p50_ms"])
    for clients, hosts in r["concurrency"].items():
        add(
            f"{clients} clients: correct turns/s",
            hosts["mcpchat"]["throughput_per_s"],
            hosts["floor"]["throughput_per_s"],
        )
        add(f"{clients} clients: p95 ms", hosts["mcpchat"]["p95_ms"], hosts["floor"]["p95_ms"])
        rows.append(
            (
                f"{clients} clients: failed checks",
                str(hosts["mcpchat"]["failures"]),
                str(hosts["floor"]["failures"]),
                "",
            )
        )
    add("CPU ms per turn (process tree)", r["cpu_ms_per_turn"]["mcpchat"], r["cpu_ms_per_turn"]["floor"])
    counted = r.get("instructions_per_turn_m")
    if counted:
        add("instructions per turn, millions (callgrind, host only)", counted["mcpchat"], counted["floor"])
    add("peak RSS MB (process tree)", r["peak_rss_mb"]["mcpchat"], r["peak_rss_mb"]["floor"])
    rows.append(("peak child processes", str(r["peak_children"]["mcpchat"]), str(r["peak_children"]["floor"]), ""))
    add("cold start s (to first 200 of /readyz)", r["cold_start_s"]["mcpchat"], r["cold_start_s"]["floor"])
    soak = r["soak_rss_mb"]
    if soak:
        rows.append(
            (
                f"soak RSS MB per 1,000 turns ({r['soak_failures']} failed)",
                " → ".join(map(str, soak)),
                "",
                f"last/first {soak[-1] / soak[0]:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--n", type=int, default=500, help="sequential requests for tool calls and listings")
    parser.add_argument("--turns", type=int, default=200, help="sequential chat turns")
    parser.add_argument("--seconds", type=float, default=30, help="duration of each concurrency run")
    parser.add_argument("--soak", type=int, default=10_000, help="turns in the soak")
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="skip the callgrind count (~3 min; it counts MCP Chat on SQLite, so a --database-url run skips it)",
    )
    parser.add_argument(
        "--database-url",
        type=postgresql_server,
        help="a PostgreSQL server for MCP Chat, e.g. postgresql://postgres@127.0.0.1:5432/test: the run creates a "
        "database of its own there and drops it at the end (default: a new SQLite file)",
    )
    args = parser.parse_args()
    results = anyio.run(main, args)
    from bench import instructions  # here: it builds on this module's helpers

    # After the timed runs, alone on the machine; None without valgrind.
    if args.instructions and args.database_url is None:
        results["instructions_per_turn_m"] = anyio.run(instructions.measure, INSTRUCTION_TURNS, INSTRUCTION_PREFILL)
    RESULTS.mkdir(parents=True, exist_ok=True)
    database = results["database"]
    path = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}{'' if database == 'sqlite' else f'-{database}'}.json"
    path.write_text(json.dumps(results, indent=2))
    machine = results["machine"]
    sys.stdout.write(
        f"{table(results)}\n\nMCP Chat on {database}; {machine['cores']} cores, "
        f"load average at start {machine['load_avg_at_start'][0]:.2f}; results in {path.relative_to(ROOT)}\n"
    )


if __name__ == "__main__":
    cli()
