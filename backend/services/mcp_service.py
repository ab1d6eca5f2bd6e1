"""The MCP service: every configured server's supervised connection, and one catalog over all of them.

Tools and prompts are exposed as `<server>__<name>` (see `backend/mcp/naming.py`); the catalog is
rebuilt whenever a server connects or reports a list change, so listing never asks a server.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import jsonschema
import structlog
from jsonschema.protocols import Validator
from pydantic import JsonValue

from backend.clients.mcp_connection import Backoff, ProgressCallback, ServerConnection, prompt_arguments
from backend.config import Settings
from backend.errors import (
    AppError,
    InvalidArgumentsError,
    InvalidResourceUriError,
    PromptNotFoundError,
    ResourceNotFoundError,
    ServerNotFoundError,
    ToolNotFoundError,
)
from backend.mcp.input_check import prompt_argument_problem, resource_uri_problem, shown_uri
from backend.mcp.models import (
    JsonObject,
    PromptInfo,
    PromptResult,
    ResourceContents,
    ResourceInfo,
    ResourceTemplateInfo,
    ServerState,
    ServerStatus,
    ToolInfo,
    ToolResult,
)
from backend.mcp.naming import exposed_names
from backend.mcp.servers_file import ServerSpec

log = structlog.get_logger(__name__)

MAX_VALIDATION_ERRORS = 20


@dataclass(frozen=True)
class _Catalog:
    tools: dict[str, ToolInfo]
    prompts: dict[str, PromptInfo]


class McpService:
    """Owns the connections to all MCP servers and answers for their tools, prompts and resources."""

    def __init__(self, specs: Sequence[ServerSpec], settings: Settings) -> None:
        self._connections = {
            spec.name: ServerConnection(
                spec,
                backoff=Backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
                shutdown_grace_s=settings.shutdown_grace_s,
                on_catalog_changed=self._rebuild_catalog,
            )
            for spec in specs
        }
        self._catalog = _Catalog(tools={}, prompts={})
        self._validators: dict[str, Validator | None] = {}  # by tool, compiled once; None: the schema is invalid
        # A rendered prompt becomes chat messages, so an argument is bounded like a message.
        self._max_prompt_argument_chars = settings.max_message_chars

    @asynccontextmanager
    async def running(self) -> AsyncIterator[McpService]:
        """Connect to every enabled server concurrently; on exit, close them all (and their processes)."""
        async with anyio.create_task_group() as tg:
            for connection in self._connections.values():
                tg.start_soon(connection.run, name=f"mcp-server:{connection.name}")
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    # -- servers -------------------------------------------------------------------------------

    def servers(self) -> list[ServerState]:
        return [connection.state() for connection in self._connections.values()]

    def connection(self, name: str) -> ServerConnection:
        """The connection to one server.

        Raises:
            ServerNotFoundError: no server of that name is configured.
        """
        try:
            return self._connections[name]
        except KeyError:
            known = ", ".join(sorted(self._connections)) or "none"
            raise ServerNotFoundError(f"No MCP server is named {name!r}; configured: {known}.") from None

    def is_settled(self) -> bool:
        """True once no server is still in its first connection attempt."""
        return all(c.status is not ServerStatus.STARTING for c in self._connections.values())

    # -- catalog -------------------------------------------------------------------------------

    def _rebuild_catalog(self) -> None:
        live = [c for c in self._connections.values() if c.status is not ServerStatus.DISABLED]
        tool_names = exposed_names((c.name, tool.name) for c in live for tool in c.tools)
        prompt_names = exposed_names((c.name, prompt.name) for c in live for prompt in c.prompts)
        tools = {
            tool_names[(c.name, tool.name)]: ToolInfo(
                name=tool_names[(c.name, tool.name)],
                server=c.name,
                original_name=tool.name,
                title=tool.title or (tool.annotations.title if tool.annotations else None),
                description=tool.description,
                input_schema=tool.input_schema,
                output_schema=tool.output_schema,
                annotations=tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
                if tool.annotations
                else None,
            )
            for c in live
            for tool in c.tools
        }
        prompts = {
            prompt_names[(c.name, prompt.name)]: PromptInfo(
                name=prompt_names[(c.name, prompt.name)],
                server=c.name,
                original_name=prompt.name,
                title=prompt.title,
                description=prompt.description,
                arguments=prompt_arguments(prompt),
            )
            for c in live
            for prompt in c.prompts
        }
        self._catalog = _Catalog(tools=tools, prompts=prompts)
        self._validators = {}

    def _is_ready(self, server: str) -> bool:
        return self._connections[server].status is ServerStatus.READY

    def tools(self) -> list[ToolInfo]:
        """Tools of every ready server, in a stable order."""
        return [tool for tool in self._catalog.tools.values() if self._is_ready(tool.server)]

    def prompts(self) -> list[PromptInfo]:
        return [prompt for prompt in self._catalog.prompts.values() if self._is_ready(prompt.server)]

    def resources(self) -> list[ResourceInfo]:
        return [
            ResourceInfo(
                uri=r.uri, server=c.name, name=r.name, title=r.title, description=r.description, mime_type=r.mime_type
            )
            for c in self._ready_connections()
            for r in c.resources
        ]

    def resource_templates(self) -> list[ResourceTemplateInfo]:
        return [
            ResourceTemplateInfo(
                uri_template=t.uri_template,
                server=c.name,
                name=t.name,
                title=t.title,
                description=t.description,
                mime_type=t.mime_type,
            )
            for c in self._ready_connections()
            for t in c.resource_templates
        ]

    def _ready_connections(self) -> list[ServerConnection]:
        return [c for c in self._connections.values() if c.status is ServerStatus.READY]

    def tool(self, name: str) -> ToolInfo:
        """One tool by its exposed name, whether or not its server is ready right now.

        Raises:
            ToolNotFoundError: no server offers a tool of that name.
        """
        tool = self._catalog.tools.get(name)
        if tool is None:
            raise ToolNotFoundError(f"No tool is named {name!r}; GET /v1/tools lists them.", tool=name)
        return tool

    # -- calls -----------------------------------------------------------------------------------

    def validate_arguments(self, tool: ToolInfo, arguments: JsonObject) -> None:
        """Check arguments against the tool's input schema before anything is sent.

        Raises:
            InvalidArgumentsError: the arguments do not match; `errors` lists each mismatch.
        """
        if tool.name not in self._validators:
            self._validators[tool.name] = _validator_for(tool)
        validator = self._validators[tool.name]
        if validator is None:
            return
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if not errors:
            return
        listed: list[JsonValue] = [
            {"field": ".".join(str(p) for p in error.absolute_path) or "(arguments)", "message": error.message}
            for error in errors[:MAX_VALIDATION_ERRORS]
        ]
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(arguments)"
        raise InvalidArgumentsError(
            f"Arguments for {tool.name!r} do not match its input schema: {where}: {first.message}", errors=listed
        )

    async def call_tool(
        self, name: str, arguments: JsonObject, on_progress: ProgressCallback | None = None
    ) -> ToolResult:
        """Validate, then call one tool on its server.

        Raises:
            ToolNotFoundError: unknown tool name.
            InvalidArgumentsError: the arguments do not match the input schema.
            RejectedParamsError, MethodNotSupportedError, ServerUnavailableError, UpstreamTimeoutError,
                UpstreamError: from the server's connection.
        """
        tool = self.tool(name)
        self.validate_arguments(tool, arguments)
        started_s = time.perf_counter()
        outcome = "cancelled"
        try:
            result = await self._connections[tool.server].call_tool(tool.original_name, arguments, on_progress)
            outcome = "tool_error" if result.is_error else "ok"
            return result
        except AppError as exc:
            outcome = exc.slug
            raise
        finally:
            log.info(
                "mcp.tool.call",
                server=tool.server,
                tool=tool.original_name,
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started_s) * 1000, 2),
            )

    async def get_prompt(self, name: str, arguments: dict[str, str]) -> PromptResult:
        """Check the arguments, then render a prompt by its exposed name.

        Raises:
            PromptNotFoundError: unknown prompt name.
            InvalidArgumentsError: an argument is not declared by the prompt, a required one is missing, or a value
                is too long or holds control characters.
            RejectedParamsError, MethodNotSupportedError, ServerUnavailableError, UpstreamTimeoutError,
                UpstreamError: from the server's connection.
        """
        prompt = self._catalog.prompts.get(name)
        if prompt is None:
            raise PromptNotFoundError(f"No prompt is named {name!r}; GET /v1/prompts lists them.", prompt=name)
        self._check_prompt_arguments(prompt, arguments)
        return await self._connections[prompt.server].get_prompt(prompt.original_name, arguments)

    def _check_prompt_arguments(self, prompt: PromptInfo, arguments: dict[str, str]) -> None:
        declared = [arg.name for arg in prompt.arguments]
        unknown = [arg for arg in arguments if arg not in declared]
        if unknown:
            takes = f"its arguments are: {', '.join(declared)}" if declared else "it takes no arguments"
            raise InvalidArgumentsError(
                f"Prompt {prompt.name!r} does not declare the argument(s) {', '.join(map(repr, unknown))}; "
                f"{takes}. Remove or rename them (GET /v1/prompts describes each prompt).",
                errors=[{"field": arg, "message": "not an argument of this prompt"} for arg in unknown],
                declared=[arg.name for arg in prompt.arguments],
            )
        missing = [arg.name for arg in prompt.arguments if arg.required and arg.name not in arguments]
        if missing:
            raise InvalidArgumentsError(
                f"Prompt {prompt.name!r} needs the argument(s): {', '.join(missing)}.",
                errors=[{"field": arg, "message": "required"} for arg in missing],
            )
        problems = [
            (arg, problem)
            for arg, value in arguments.items()
            if (problem := prompt_argument_problem(value, self._max_prompt_argument_chars)) is not None
        ]
        if problems:
            arg, problem = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InvalidArgumentsError(
                f"Argument {arg!r} of prompt {prompt.name!r} {problem}{more}.",
                errors=[{"field": arg, "message": problem} for arg, problem in problems],
            )

    async def read_resource(self, uri: str, server: str | None = None) -> ResourceContents:
        """Check the URI, then read it from `server`, or from the server that lists it (or a template matching it).

        Raises:
            InvalidResourceUriError: the URI is not an RFC 3986 URI free of control characters and whitespace, or
                is too long; nothing is sent.
            ServerNotFoundError: `server` names no configured server.
            ResourceNotFoundError: no ready server lists the URI or a template that matches it, or the server
                asked has no such resource.
            RejectedParamsError, MethodNotSupportedError, ServerUnavailableError, UpstreamTimeoutError,
                UpstreamError: from the server's connection.
        """
        if problem := resource_uri_problem(uri):
            raise InvalidResourceUriError(
                f"Resource URI {shown_uri(uri)} {problem}. A resource URI follows RFC 3986 (scheme:rest, e.g. "
                "file:///notes.txt); GET /v1/resources lists the ones servers offer."
            )
        if server is not None:
            return await self.connection(server).read_resource(uri)
        ready = self._ready_connections()
        owner = next((c for c in ready if any(r.uri == uri for r in c.resources)), None)
        owner = owner or next(
            (c for c in ready if any(_template_matches(t.uri_template, uri) for t in c.resource_templates)), None
        )
        if owner is None:
            raise ResourceNotFoundError(
                f"No ready MCP server lists {shown_uri(uri)} or a template matching it; pass ?server=<name> to ask "
                "one.",
            )
        return await owner.read_resource(uri)


def _validator_for(tool: ToolInfo) -> Validator | None:
    """The tool's input schema, compiled; formats are not asserted and a remote `$ref` is never fetched (as
    jsonschema does by default). None when the schema itself is invalid: the server's own validation still
    applies, ours only saves a round trip."""
    cls = jsonschema.validators.validator_for(tool.input_schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(tool.input_schema)
    except jsonschema.SchemaError as exc:
        log.warning("mcp.tool.schema_invalid", tool=tool.name, error=exc.message)
        return None
    validator: Validator = cls(tool.input_schema)
    return validator


def _template_matches(template: str, uri: str) -> bool:
    """RFC 6570 level-1 matching: each `{var}` stands for one non-empty segment without '/'."""
    pattern = "".join(
        "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", template) if part
    )
    return re.fullmatch(pattern, uri) is not None
