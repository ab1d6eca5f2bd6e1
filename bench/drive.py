"""`python -m bench.drive`: one host alone under N concurrent /api/chat clients, for profiling between full runs.

Starts the fake model and `mcpchat serve` as `make bench` does (or, with `--host floor`, bench/floor.py),
optionally fills the legacy conversation first, then prints throughput, latency and the CPU per turn of the
host's process tree and of the fake model. Attach a profiler to the printed pid while it runs
(e.g. `py-spy record --gil --pid PID`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import httpx

from bench.run import (
    Tree,
    concurrent,
    fake_model_command,
    host_command,
    mcpchat_env,
    route_call,
    sequential,
    spawn,
)
from tests.support.processes import free_port, wait_http_ok


async def main(args: argparse.Namespace) -> None:
    fake_port, chat_port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    fake = spawn(fake_model_command(fake_port), {})
    scratch: Path | None = None
    database_url = args.database_url
    if database_url is None:  # a new SQLite file, removed at the end
        scratch = Path(tempfile.mkdtemp(prefix="mcpchat-drive-"))
        database_url = f"sqlite:///{scratch / 'mcpchat.db'}"
    chat = spawn(host_command(args.host, chat_port, model_url), mcpchat_env(chat_port, model_url, database_url))
    try:
        await wait_http_ok(f"{model_url}/models")
        await wait_http_ok(f"http://127.0.0.1:{chat_port}/readyz", timeout_s=60)
        sys.stdout.write(f"{args.host} pid {chat.pid}\n")
        app, model = Tree(chat.pid), Tree(fake.pid)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{chat_port}", timeout=30, limits=limits) as http:
            call = await route_call(http, args.route)
            if args.prefill:
                await sequential(args.prefill, call)
            app_s, model_s = app.cpu_s(), model.cpu_s()
            result = await concurrent(args.clients, args.seconds, call)
            turns = max(int(result["n"]), 1)
            sys.stdout.write(
                f"{args.clients} clients, {args.seconds:g} s: {result['throughput_per_s']} correct turns/s, "
                f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, {result['failures']} failed; "
                f"CPU per turn: {args.host} {(app.cpu_s() - app_s) / turns * 1000:.2f} ms, "
                f"fake model {(model.cpu_s() - model_s) / turns * 1000:.2f} ms\n"
            )
    finally:
        for process in (chat, fake):
            process.terminate()
            process.wait(timeout=15)
        if scratch is not None:  # the database it made for this run
            shutil.rmtree(scratch, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drive", description=__doc__)
    parser.add_argument("--host", choices=("mcpchat", "floor"), default="mcpchat")
    parser.add_argument("--route", choices=("legacy", "v1"), default="legacy", help="/api/chat, or v1 messages")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--prefill", type=int, default=200, help="sequential turns before measuring")
    parser.add_argument("--database-url", help="MCP Chat's database (default: a new SQLite file)")
    anyio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
