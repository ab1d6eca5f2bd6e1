"""A stdio transport for MCP that owns the server's whole process group.

The SDK's `stdio_client` signals the group only when the leader survives stdin EOF, and it hands
the child our own stderr. Here each server starts in its own session (so its own process group);
stopping it closes stdin, then terminates and finally kills the whole group, so no grandchild
(`npx` → node, a `bash -c` wrapper) outlives the app. Stderr lines go to a callback so they can be
logged under the server's name and kept for error messages.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
import mcp_types
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

_EXIT_POLL_S = 0.02
_STDERR_DRAIN_S = 0.5


@dataclass
class StdioProcess:
    """What the connection learns about the child: its pid, and when its stdout ended."""

    pid: int | None = None
    stdout_closed: anyio.Event = field(default_factory=anyio.Event)


@asynccontextmanager
async def stdio_transport(
    command: str,
    args: tuple[str, ...],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    grace_s: float,
    on_stderr_line: Callable[[str], None],
    process_info: StdioProcess,
) -> AsyncIterator[TransportStreams]:
    """Start `command` in a new process group and speak newline-delimited JSON-RPC over its pipes.

    Raises:
        OSError: the command cannot be started (not found, not executable, bad cwd).
    """
    process = await anyio.open_process(
        [command, *args], env={**get_default_environment(), **env}, cwd=cwd, start_new_session=True
    )
    process_info.pid = process.pid
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def pump_stdout() -> None:
        assert process.stdout is not None
        buffer = ""
        try:
            async with read_writer:
                async for chunk in TextReceiveStream(process.stdout, errors="replace"):
                    *lines, buffer = (buffer + chunk).split("\n")
                    for line in lines:
                        if line.strip():
                            await read_writer.send(_parse(line))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session went away first; shutdown below stops the process
        finally:
            process_info.stdout_closed.set()

    async def pump_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # A dead child: close the read side so waiting requests fail instead of hanging.
            await read_writer.aclose()

    stderr_done = anyio.Event()

    async def pump_stderr() -> None:
        assert process.stderr is not None
        buffer = ""
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for chunk in TextReceiveStream(process.stderr, errors="replace"):
                *lines, buffer = (buffer + chunk).split("\n")
                for line in lines:
                    on_stderr_line(line)
        if buffer:
            on_stderr_line(buffer)
        stderr_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump_stdout)
        tg.start_soon(pump_stdin)
        tg.start_soon(pump_stderr)
        try:
            yield read_stream, write_stream
        finally:
            # Bounded and shielded: a cancelled owner must still not leak the process group.
            with anyio.CancelScope(shield=True):
                await stop_process_group(process, grace_s)
                # The last stderr lines usually say why a server died: let them arrive.
                with anyio.move_on_after(_STDERR_DRAIN_S):
                    await stderr_done.wait()
                await write_stream.aclose()
                await read_stream.aclose()
            tg.cancel_scope.cancel()


async def stop_process_group(process: Process, grace_s: float) -> None:
    """Close stdin, wait `grace_s`, SIGTERM the group, wait `grace_s`, SIGKILL what is left."""
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    await _wait_for(lambda: process.returncode is not None, grace_s)
    # Even when the leader left on EOF, its children may still be in the group.
    if _signal_group(pgid, signal.SIGTERM):
        await _wait_for(lambda: process.returncode is not None and not _signal_group(pgid, 0), grace_s)
        _signal_group(pgid, signal.SIGKILL)
    await _wait_for(lambda: process.returncode is not None, grace_s)
    if process.stdout is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdout.aclose()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the id was reused by someone else's group: nothing of ours is left
    return True


async def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    with anyio.move_on_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - no event exists for "a process group emptied"
            await anyio.sleep(_EXIT_POLL_S)
        return True
    return False


def _parse(line: str) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except (ValidationError, ValueError) as exc:
        return exc
