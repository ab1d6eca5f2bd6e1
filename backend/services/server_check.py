"""`mcpchat servers check`: start each server once, list its tools, and flag what OpenAI would reject."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from backend.clients.mcp_connection import Backoff, ServerConnection
from backend.config import Settings
from backend.mcp.models import ServerStatus
from backend.mcp.naming import exposed_names
from backend.mcp.schema_check import openai_schema_problems
from backend.mcp.servers_file import ServerSpec

_SETTLED = (ServerStatus.READY, ServerStatus.FAILED, ServerStatus.RECONNECTING, ServerStatus.DISABLED)


@dataclass
class ServerReport:
    name: str
    transport: str
    status: ServerStatus
    error: str | None = None
    tools: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        return self.status in (ServerStatus.READY, ServerStatus.DISABLED) and not self.problems


async def check_server(spec: ServerSpec, settings: Settings) -> ServerReport:
    """Connect to one server once (no retries) and report what it offers."""
    connection = ServerConnection(
        spec,
        backoff=Backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
        shutdown_grace_s=settings.shutdown_grace_s,
        on_catalog_changed=lambda: None,
    )
    report = ServerReport(name=spec.name, transport=spec.transport, status=connection.status, error=connection.error)
    if connection.status in (ServerStatus.DISABLED, ServerStatus.FAILED):
        return report
    async with anyio.create_task_group() as tg:
        tg.start_soon(connection.run)
        # The connection's own connect_timeout_s bounds this; the margin covers process shutdown.
        with anyio.move_on_after(spec.connect_timeout_s + 10):
            await connection.wait_for_status(*_SETTLED)
        tools = list(connection.tools)
        report.status, report.error = connection.status, connection.error
        tg.cancel_scope.cancel()
    names = exposed_names((spec.name, tool.name) for tool in tools)
    for tool in tools:
        report.tools.append(tool.name)
        exposed = names[(spec.name, tool.name)]
        report.problems.extend(
            f"tool {tool.name!r}: {problem}"
            for problem in openai_schema_problems(exposed, tool.description, tool.input_schema)
        )
    return report


async def check_servers(specs: Sequence[ServerSpec], settings: Settings) -> list[ServerReport]:
    """Check every server concurrently; reports come back in file order."""
    reports: dict[str, ServerReport] = {}

    async def check(spec: ServerSpec) -> None:
        reports[spec.name] = await check_server(spec, settings)

    async with anyio.create_task_group() as tg:
        for spec in specs:
            tg.start_soon(check, spec)
    return [reports[spec.name] for spec in specs]
