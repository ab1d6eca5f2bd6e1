"""A purpose-built MCP server for tests: it crashes, hangs, reports progress, changes its tool list on demand,
and answers with any JSON-RPC error code a test picks.

Run with `python -m tests.support.mcp_test_server [--http --port N]`. Files written to $TEST_SERVER_MARKER_DIR
prove to a test what happened inside the server (a call started, a call was cancelled, a request arrived:
`request-<method>`, e.g. `request-resources-read`).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, EmbeddedResource, ImageContent, TextContent, TextResourceContents
from pydantic import BaseModel

# The smallest valid PNG: one transparent pixel.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def mark(name: str) -> None:
    directory = os.environ.get("TEST_SERVER_MARKER_DIR")
    if directory:
        (Path(directory) / name).touch()


async def mark_requests(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Write `request-<method>` for each request, before any lookup: proof that a request reached the server."""
    if ctx.request_id is not None:
        mark("request-" + ctx.method.replace("/", "-"))
    return await call_next(ctx)


server = MCPServer("test-server", version="0.0.1", middleware=[mark_requests])


def protocol_error(code: int, uri: str | None = None) -> MCPError:
    """The JSON-RPC error a handler raises to answer with `code` (MCPServer passes an MCPError through as is)."""
    return MCPError(code=code, message=f"chosen error {code}", data={"uri": uri} if uri else None)


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def crash() -> str:
    """Exit the process at once, mid-call."""
    os._exit(3)


@server.tool()
async def hang(seconds: float) -> str:
    """Sleep; writes `started-hang`, and `cancelled-hang` if the call is cancelled."""
    mark("started-hang")
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        mark("cancelled-hang")
        raise
    return "woke up"


_arrivals: dict[str, anyio.Event] = {}


def _arrival(name: str) -> anyio.Event:
    return _arrivals.setdefault(name, anyio.Event())


@server.tool()
async def barrier(name: str, others: list[str], timeout_s: float = 10.0) -> CallToolResult:
    """Arrive as `name`, then wait for every one of `others`: it succeeds only when the calls overlap."""
    _arrival(name).set()
    with anyio.move_on_after(timeout_s):
        for other in others:
            await _arrival(other).wait()
        return CallToolResult(content=[text(f"{name} met {', '.join(others)}")])
    return CallToolResult(content=[text(f"{name} waited {timeout_s}s alone")], is_error=True)


@server.tool()
async def progress(steps: int, delay_s: float, ctx: Context) -> str:
    """Report progress `steps` times, then answer "done"."""
    for step in range(1, steps + 1):
        await anyio.sleep(delay_s)
        await ctx.report_progress(step, steps, f"step {step}")
    return "done"


@server.tool()
def fail() -> CallToolResult:
    """Always answers with an error result."""
    return CallToolResult(content=[text("this tool always fails")], is_error=True)


@server.tool()
def image() -> CallToolResult:
    """A 1x1 PNG and a caption."""
    png = ImageContent(type="image", data=base64.b64encode(PNG_1X1).decode(), mime_type="image/png")
    return CallToolResult(content=[png, text("a single transparent pixel")])


class Squared(BaseModel):
    n: int
    squared: int


@server.tool()
def structured(n: int) -> Squared:
    """Structured output: n and its square."""
    return Squared(n=n, squared=n * n)


@server.tool()
def embedded_resource() -> CallToolResult:
    """A result carrying an embedded text resource."""
    contents = TextResourceContents(uri="test://embedded", text="embedded text", mime_type="text/plain")
    return CallToolResult(content=[EmbeddedResource(type="resource", resource=contents)])


@server.tool()
async def log(message: str, ctx: Context) -> str:
    """Send `message` as an MCP log notification."""
    await ctx.info(message)
    return "logged"


@server.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Register a new tool called `name` and announce that the tool list changed (both protocol eras)."""

    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name, description=f"A tool added at run time: {name}")
    await ctx.notify_tools_changed()  # 2026-07-28 clients listening with subscriptions/listen
    await ctx.session.send_tool_list_changed()  # older clients; dropped by the SDK on the modern era
    return f"added {name}"


@server.tool(name="protocol_error")
def protocol_error_tool(code: int) -> str:
    """Answer with the JSON-RPC error `code` instead of a result."""
    raise protocol_error(code)


@server.tool()
def spawn_grandchild() -> str:
    """Start a long-lived child process in this server's process group; answers its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    return str(child.pid)


@server.resource("test://greeting", mime_type="text/plain")
def greeting() -> str:
    """A fixed greeting."""
    return "hello"


@server.resource("test://items/{item_id}", mime_type="text/plain")
def item(item_id: str) -> str:
    """One item by id."""
    return f"item {item_id}"


@server.resource("test://protocol-errors/{code}", mime_type="text/plain")
def protocol_error_resource(code: str) -> str:
    """Answer with the JSON-RPC error `code`; -32002 carries the URI, as legacy servers report a missing resource."""
    raise protocol_error(int(code), uri=f"test://protocol-errors/{code}" if code == "-32002" else None)


@server.prompt()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Say hello to {name}."


@server.prompt(name="protocol_error")
def protocol_error_prompt(code: str) -> str:
    """Answer with the JSON-RPC error `code` instead of messages."""
    raise protocol_error(int(code))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.mcp_test_server")
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--fail-on-start", metavar="MESSAGE", help="print MESSAGE to stderr and exit 1")
    parser.add_argument("--stderr-banner", metavar="TEXT", help="print TEXT to stderr before serving")
    parser.add_argument("--ignore-stdin-eof", action="store_true", help="keep running after stdin closes")
    args = parser.parse_args()
    if args.stderr_banner:
        sys.stderr.write(args.stderr_banner + "\n")
        sys.stderr.flush()
    if args.fail_on_start:
        sys.exit(args.fail_on_start)  # printed to stderr, exit status 1
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
        return
    server.run()
    if args.ignore_stdin_eof:
        time.sleep(600)  # like a wrapper script that never notices its stdin is gone


if __name__ == "__main__":
    main()
