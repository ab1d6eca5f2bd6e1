"""Start MCP Chat or an MCP server as a real subprocess for tests that need a whole process."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import anyio
import httpx

from tests.support.specs import REPO_ROOT
from tests.support.waiting import POLL_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def http_server(
    module: str, port: int, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an MCP server module over Streamable HTTP on 127.0.0.1:`port`; killed when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--http", "--port", str(port), *args],
        cwd=REPO_ROOT,
        env={**dict(env or {}), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


async def wait_http_ok(url: str, timeout_s: float = 60) -> httpx.Response:
    """Poll `url` until it answers 200: a process starting up tells no one when it is ready."""
    with anyio.fail_after(timeout_s):
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                try:
                    response = await client.get(url)
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    return response
                await anyio.sleep(POLL_S)
