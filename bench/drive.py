"""`python -m bench.drive`: one host alone under N concurrent /api/chat clients, for profiling between full runs.

Starts the fake model and `mcpchat serve` as `make bench` does (or, with `--host floor`, bench/floor.py), on a new
SQLite file or, with `--database-url`, in a new database of its own on that PostgreSQL server; optionally fills
the legacy conversation first, then prints throughput, latency and the CPU per turn of the host's process tree and
of the fake model (a PostgreSQL server's own CPU is not counted). Attach a profiler to the printed pid while it runs
(e.g. `py-spy record --gil --pid PID`).
"""

from __future__ import annotations

import argparse
import sys

import anyio
import httpx

from bench.run import (
    Tree,
    concurrent,
    fake_model_command,
    host_command,
    mcpchat_env,
    postgresql_server,
    route_call,
    scratch_database,
    sequential,
    spawn,
)
from tests.support.processes import free_port, wait_http_ok


async def main(args: argparse.Namespace) -> None:
    async with scratch_database(args.database_url) as database_url:
        await drive(args, database_url)


async def drive(args: argparse.Namespace, database_url: str) -> None:
    fake_port, chat_port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    fake = spawn(fake_model_command(fake_port), {})
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


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drive", description=__doc__)
    parser.add_argument("--host", choices=("mcpchat", "floor"), default="mcpchat")
    parser.add_argument("--route", choices=("legacy", "v1"), default="legacy", help="/api/chat, or v1 messages")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--prefill", type=int, default=200, help="sequential turns before measuring")
    parser.add_argument(
        "--database-url",
        type=postgresql_server,
        help="a PostgreSQL server for MCP Chat: the run creates a database of its own there and drops it at the end "
        "(default: a new SQLite file)",
    )
    anyio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
