"""`python -m bench.instructions`: CPU instructions per chat turn of each host, counted by callgrind.

Timings on a shared VM drift by up to 1.7x from one minute to the next; the instructions a process executes for
the same requests do not (the same count within 0.5% run to run, whatever else the machine does). So this runs
each host (MCP Chat as `make run` starts it, and the floor) under `valgrind --tool=callgrind` beside the fake
model, sends sequential /api/chat turns to fill the history, zeroes the counters, sends `--turns` more and
reads the count: the host process's own user-space instructions, without its children or the kernel. A turn is
about 50 times slower under callgrind, so this measures work, not latency. Needs valgrind (Debian: valgrind).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import httpx

from bench.run import fake_model_command, host_command, mcpchat_env, route_call, sequential, spawn
from tests.support.processes import free_port, wait_http_ok

HOSTS = ("mcpchat", "floor")
READY_TIMEOUT_S = 300  # start-up under callgrind takes a minute or more


async def instructions_per_turn(
    host: str, turns: int, prefill: int, keep: Path | None = None, route: str = "legacy"
) -> float:
    """Millions of instructions `host` executes per sequential turn, after `prefill` turns of history.

    `keep`: a folder to leave the counted part's callgrind output in, as `<host>.callgrind` (for
    `callgrind_annotate`). `route`: MCP Chat's turns through /api/chat ("legacy") or, in a conversation of
    their own, through POST /v1/conversations/{id}/messages ("v1"); the floor has only /api/chat."""
    fake_port, port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{fake_port}/v1"
    out_dir = Path(tempfile.mkdtemp(prefix="mcpchat-callgrind-"))
    env = mcpchat_env(port, model_url, f"sqlite:///{out_dir / 'mcpchat.db'}")
    fake = spawn(fake_model_command(fake_port), {})
    callgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out"]
    command = host_command(host, port, model_url)
    if command[0] != sys.executable:  # the mcpchat script: valgrind runs the interpreter, not the script
        command.insert(0, sys.executable)
    served = spawn([*callgrind, *command], env)
    try:
        await wait_http_ok(f"{model_url}/models")
        await wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=READY_TIMEOUT_S)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            call = await route_call(http, route if host == "mcpchat" else "legacy")
            await sequential(prefill, call)
            await anyio.run_process(["callgrind_control", "--zero", str(served.pid)])
            result = await sequential(turns, call)
            await anyio.run_process(["callgrind_control", "--dump", str(served.pid)])
        if result.failures:
            raise RuntimeError(f"{result.failures} of {turns} turns failed their checks on {host}")
    finally:
        for process in (served, fake):
            process.terminate()
            process.wait(timeout=60)
    # The dump after --zero is the first numbered part: callgrind.out.1
    text = (out_dir / "callgrind.out.1").read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction count in {out_dir / 'callgrind.out.1'}")
    if keep is not None:
        _keep(out_dir / "callgrind.out.1", keep / f"{host}.callgrind")
    shutil.rmtree(out_dir, ignore_errors=True)
    return int(found.group(1)) / turns / 1e6


def _keep(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


async def measure(turns: int, prefill: int, keep: Path | None = None, route: str = "legacy") -> dict[str, float] | None:
    """Each host's instructions per turn (millions), or None without valgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return None
    return {host: round(await instructions_per_turn(host, turns, prefill, keep, route), 3) for host in HOSTS}


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--turns", type=int, default=100, help="turns counted")
    parser.add_argument("--prefill", type=int, default=100, help="turns of history sent first")
    parser.add_argument("--keep", type=Path, help="a folder to keep each host's callgrind output in")
    parser.add_argument("--route", choices=("legacy", "v1"), default="legacy", help="MCP Chat's: /api/chat or v1")
    args = parser.parse_args()
    counts = anyio.run(measure, args.turns, args.prefill, args.keep, args.route)
    if counts is None:
        sys.exit("valgrind (with callgrind_control) is not installed: apt install valgrind")
    ratio = counts["mcpchat"] / counts["floor"]
    sys.stdout.write(
        f"instructions per {args.route} turn (millions, {args.turns} turns after {args.prefill}): "
        f"MCP Chat {counts['mcpchat']}, floor {counts['floor']}, ratio {ratio:.2f}x\n"
    )


if __name__ == "__main__":
    cli()
