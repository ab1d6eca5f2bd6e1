"""One supervised, long-lived connection to one MCP server.

`run()` is the owner task: it enters and exits the SDK `Client` itself, keeps the server's tools,
prompts and resources cached, refreshes them on list_changed, and reconnects with capped,
jittered backoff when the server crashes or stops answering. Any other task may call tools on the
connection concurrently; a call on a lost connection fails at once.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx2
import mcp_types
import structlog
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.client.session import IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from backend.clients.mcp_stdio import StdioProcess, stdio_transport
from backend.errors import (
    AppError,
    ConflictError,
    MethodNotSupportedError,
    RejectedParamsError,
    ResourceNotFoundError,
    ServerUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from backend.mcp.input_check import shown_uri
from backend.mcp.models import (
    JsonObject,
    Progress,
    PromptArgument,
    PromptResult,
    ResourceContents,
    ServerState,
    ServerStatus,
    ToolResult,
)
from backend.mcp.servers_file import ServerSpec

log = structlog.get_logger(__name__)

CLIENT_INFO = mcp_types.Implementation(name="mcp-chat", version="0.1.0")
STDERR_TAIL_LINES = 20
_LEGACY_RESOURCE_NOT_FOUND = -32002  # retired by 2026-07-28 (SEP-2164), still sent by legacy-era servers
_SERVER_MESSAGE_MAX_CHARS = 300  # a server's error text is quoted in our problem detail, never at any length
_LIST_PAGE_CAP = 1000  # a paginator that never ends must not hang the connection
_HTTP_PROBE_INTERVAL_S = 15.0
ProgressCallback = Callable[[Progress], Awaitable[None]]


class Backoff:
    """Capped exponential backoff with jitter: each wait is drawn from [ceiling/2, ceiling]."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s, self.attempt = initial_s, max_s, 0

    def next_s(self) -> float:
        ceiling = min(self.max_s, self.initial_s * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class ServerConnection:
    """The supervised connection to one server and what it currently offers."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        backoff: Backoff,
        shutdown_grace_s: float,
        on_catalog_changed: Callable[[], None],
    ) -> None:
        self.spec = spec
        self._backoff = backoff
        self._shutdown_grace_s = shutdown_grace_s
        self._on_catalog_changed = on_catalog_changed
        self.status = ServerStatus.STARTING if spec.is_enabled else ServerStatus.DISABLED
        self.error: str | None = spec.config_error
        if spec.is_enabled and spec.config_error:
            self.status = ServerStatus.FAILED
        self.tools: list[mcp_types.Tool] = []
        self.prompts: list[mcp_types.Prompt] = []
        self.resources: list[mcp_types.Resource] = []
        self.resource_templates: list[mcp_types.ResourceTemplate] = []
        self.protocol_version: str | None = None
        self.server_info: mcp_types.Implementation | None = None
        self._client: Client | None = None
        self._process = StdioProcess()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._lost = anyio.Event()
        self._status_changed = anyio.Event()
        self._mode = "auto"
        self._is_reconnect_requested = False
        self.attempts = 0  # connection attempts so far, for logs and tests
        self._wakeup = anyio.Event()
        self._refresh_requests: set[str] = set()
        self._refresh_wakeup = anyio.Event()

    # -- state -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    def state(self) -> ServerState:
        """A snapshot of this server for the API."""
        info = self.server_info
        return ServerState(
            name=self.name,
            status=self.status,
            transport=self.spec.transport,
            description=self.spec.description,
            protocol_version=self.protocol_version,
            server_name=info.name if info else None,
            server_version=info.version if info else None,
            error=self.error,
            tool_count=len(self.tools),
            prompt_count=len(self.prompts),
            resource_count=len(self.resources),
            pid=self._process.pid if self.spec.transport == "stdio" and self._client is not None else None,
        )

    def _set_status(self, status: ServerStatus, error: str | None = None) -> None:
        self.status, self.error = status, error
        self._status_changed.set()
        self._status_changed = anyio.Event()

    async def wait_for_status(self, *statuses: ServerStatus) -> None:
        """Return once the server is in one of `statuses` (callers bound the wait)."""
        while self.status not in statuses:
            await self._status_changed.wait()

    def request_reconnect(self) -> None:
        """Drop the current connection (or cut a backoff wait short); the owner task reconnects at once."""
        if self.status is ServerStatus.DISABLED or self.spec.config_error:
            reason = "it is disabled" if self.status is ServerStatus.DISABLED else "its configuration is invalid"
            raise ConflictError(f"Server {self.name!r} cannot be reconnected: {reason} in the servers file.")
        self._is_reconnect_requested = True
        if self.status is ServerStatus.READY:
            self._set_status(ServerStatus.RECONNECTING, "reconnect requested")
        self._lost.set()
        self._wakeup.set()

    # -- the owner task ----------------------------------------------------------------------

    async def run(self) -> None:
        """Own the connection until cancelled: connect, serve, reconnect with backoff."""
        if self.status in (ServerStatus.DISABLED, ServerStatus.FAILED):
            return  # disabled, or a configuration error no retry can fix
        while True:
            self._is_reconnect_requested = False
            await self._serve_once()
            delay_s = 0.0 if self._is_reconnect_requested else self._backoff.next_s()
            log.info("mcp.server.retry", server=self.name, in_s=round(delay_s, 2))
            self._wakeup = anyio.Event()
            with anyio.move_on_after(delay_s):
                await self._wakeup.wait()

    async def _serve_once(self) -> None:
        """Connect, load the catalog, serve until the connection is lost or fails."""
        self.attempts += 1
        self._lost = anyio.Event()
        is_ready = False
        was_ever_ready = self.status in (ServerStatus.READY, ServerStatus.RECONNECTING)
        with anyio.CancelScope() as scope:
            # One scope around the whole connection, so the connect deadline nests with the
            # transport's task group instead of cutting into it.
            scope.deadline = anyio.current_time() + self.spec.connect_timeout_s
            try:
                async with self._open() as client:
                    await self._load_catalog(client)
                    scope.deadline = float("inf")
                    self._remember_era(client)
                    self._client = client
                    is_ready = True
                    self._backoff.reset()
                    self._set_status(ServerStatus.READY)
                    log.info(
                        "mcp.server.ready", server=self.name, protocol=client.protocol_version, tools=len(self.tools)
                    )
                    await self._watch(client)
                    reason = "connection lost"
            except Exception as exc:  # supervisor boundary: one server must not stop the app
                reason = _describe(exc)
                log.warning("mcp.server.down", server=self.name, error=reason)
            finally:
                self._client = None
        if scope.cancelled_caught and not is_ready:
            reason = f"no answer within connect_timeout_s={self.spec.connect_timeout_s:g}"
        if self._process.stdout_closed.is_set() and self.spec.transport == "stdio":
            reason = "the server process exited" if reason == "connection lost" else reason
        reason = self._with_stderr(reason)
        if is_ready or was_ever_ready:
            self._set_status(ServerStatus.RECONNECTING, reason)
        else:
            self._set_status(ServerStatus.FAILED, reason)

    def _open(self) -> AbstractAsyncContextManager[Client]:
        @asynccontextmanager
        async def opened() -> AsyncIterator[Client]:
            self._process = StdioProcess()
            self._stderr_tail.clear()
            async with self._transport() as transport:
                client = Client(
                    _StreamsTransport(transport),
                    mode=self._mode,
                    read_timeout_seconds=self.spec.call_timeout_s,
                    client_info=CLIENT_INFO,
                    logging_callback=self._on_server_log,
                    log_level="info",
                    message_handler=self._on_message,
                    cache=None,  # we keep our own catalog, refreshed on list_changed
                )
                async with client:
                    yield client

        return opened()

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[TransportStreams]:
        spec = self.spec
        if spec.transport == "stdio":
            assert spec.command is not None
            async with stdio_transport(
                spec.command,
                spec.args,
                env=spec.env,
                cwd=spec.cwd,
                grace_s=self._shutdown_grace_s,
                on_stderr_line=self._on_stderr_line,
                process_info=self._process,
            ) as streams:
                yield streams
            return
        assert spec.url is not None
        timeout = httpx2.Timeout(spec.connect_timeout_s, read=max(spec.call_timeout_s, 300.0))
        if spec.transport == "sse":
            async with sse_client(spec.url, headers=dict(spec.headers), timeout=spec.connect_timeout_s) as streams:
                yield streams
            return
        async with (
            httpx2.AsyncClient(headers=dict(spec.headers), timeout=timeout) as http,
            streamable_http_client(spec.url, http_client=http) as streams,
        ):
            yield streams

    def _remember_era(self, client: Client) -> None:
        # A legacy server that ignores the discover probe costs a 10 s wait; pay it once.
        self.protocol_version = client.protocol_version
        self.server_info = client.server_info
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._mode = "legacy"

    async def _watch(self, client: Client) -> None:
        """Serve until the connection is lost or a reconnect is requested."""
        async with anyio.create_task_group() as tg:
            if self.spec.transport == "stdio":
                tg.start_soon(self._watch_process)
            elif client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                tg.start_soon(self._probe_http, client)
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                tg.start_soon(self._listen, client)
            tg.start_soon(self._refresh_loop, client)
            await self._lost.wait()
            tg.cancel_scope.cancel()

    async def _watch_process(self) -> None:
        await self._process.stdout_closed.wait()
        self._lost.set()

    async def _probe_http(self, client: Client) -> None:
        # Nothing tells a legacy HTTP client its server died until a request fails: ask now and then.
        while True:
            await anyio.sleep(_HTTP_PROBE_INTERVAL_S)
            try:
                with anyio.fail_after(self.spec.connect_timeout_s):
                    await client.session.list_tools()
            except (MCPError, TimeoutError, httpx2.HTTPError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._lost.set()
                return

    async def _listen(self, client: Client) -> None:
        caps = client.server_capabilities
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        if not (tools or prompts or resources):
            return
        try:
            async with client.listen(
                tools_list_changed=tools, prompts_list_changed=prompts, resources_list_changed=resources
            ) as subscription:
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        self._request_refresh("tools")
                    elif isinstance(event, PromptsListChanged):
                        self._request_refresh("prompts")
                    elif isinstance(event, ResourcesListChanged):
                        self._request_refresh("resources")
        except ListenNotSupportedError:
            return
        except (SubscriptionLost, MCPError, TimeoutError) as exc:
            if self.spec.transport != "stdio":
                log.info("mcp.server.listen_lost", server=self.name, error=_describe(exc))
                self._lost.set()

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._request_refresh("tools")
        elif isinstance(message, mcp_types.PromptListChangedNotification):
            self._request_refresh("prompts")
        elif isinstance(message, mcp_types.ResourceListChangedNotification):
            self._request_refresh("resources")
        elif isinstance(message, Exception):
            log.info("mcp.server.transport_error", server=self.name, error=_describe(message))

    def _request_refresh(self, kind: str) -> None:
        self._refresh_requests.add(kind)
        self._refresh_wakeup.set()

    async def _refresh_loop(self, client: Client) -> None:
        # Lists are fetched here, not in the notification handler, which runs in the session's receive loop.
        while True:
            await self._refresh_wakeup.wait()
            self._refresh_wakeup = anyio.Event()
            kinds, self._refresh_requests = self._refresh_requests, set()
            try:
                with anyio.fail_after(self.spec.call_timeout_s):
                    await self._load_catalog(client, kinds)
            except (MCPError, TimeoutError) as exc:
                log.warning("mcp.server.refresh_failed", server=self.name, error=_describe(exc))
                continue
            log.info("mcp.server.catalog_refreshed", server=self.name, kinds=sorted(kinds), tools=len(self.tools))

    async def _load_catalog(self, client: Client, kinds: set[str] | None = None) -> None:
        caps = client.server_capabilities
        if (kinds is None or "tools" in kinds) and caps.tools is not None:
            self.tools = await _all_pages(lambda cursor: client.list_tools(cursor=cursor), lambda page: page.tools)
        if (kinds is None or "prompts" in kinds) and caps.prompts is not None:
            self.prompts = await _all_pages(
                lambda cursor: client.list_prompts(cursor=cursor), lambda page: page.prompts
            )
        if (kinds is None or "resources" in kinds) and caps.resources is not None:
            self.resources = await _all_pages(
                lambda cursor: client.list_resources(cursor=cursor), lambda page: page.resources
            )
            self.resource_templates = await _all_pages(
                lambda cursor: client.list_resource_templates(cursor=cursor), lambda page: page.resource_templates
            )
        self._on_catalog_changed()

    # -- server output ---------------------------------------------------------------------

    def _on_stderr_line(self, line: str) -> None:
        self._stderr_tail.append(line)
        log.info("mcp.server.stderr", server=self.name, line=line)

    async def _on_server_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        log.info("mcp.server.log", server=self.name, level=params.level, logger=params.logger, data=params.data)

    def _with_stderr(self, reason: str) -> str:
        if self.spec.transport != "stdio" or not self._stderr_tail:
            return reason
        return reason + "; stderr: " + " | ".join(line for line in self._stderr_tail if line.strip())[-2000:]

    # -- calls from other tasks ----------------------------------------------------------------

    def _ready_client(self) -> Client:
        if self.status is not ServerStatus.READY or self._client is None:
            detail = f"MCP server {self.name!r} is {self.status.value}"
            if self.error:
                detail += f": {self.error}"
            raise ServerUnavailableError(detail + ". Try again once it is ready.", server=self.name)
        return self._client

    async def call_tool(
        self, tool: str, arguments: JsonObject, on_progress: ProgressCallback | None = None
    ) -> ToolResult:
        """Call one tool with this server's timeout.

        Raises:
            RejectedParamsError, MethodNotSupportedError, UpstreamError: the server answered with a JSON-RPC error
                (see `_answered_error`).
            ServerUnavailableError: the server is not ready, or its connection dropped during the call.
            UpstreamTimeoutError: no answer within the server's `timeout_s` (the server is told to cancel).
        """
        client = self._ready_client()
        forward = None
        if on_progress is not None:  # without a callback no progress token is sent, so the server sends none

            async def forward(progress: float, total: float | None, message: str | None) -> None:
                await on_progress(Progress(progress=progress, total=total, message=message))

        started_s = time.perf_counter()
        with self._mapped_errors("tools/call", f"calling {tool!r}"):
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=self.spec.call_timeout_s, progress_callback=forward
            )
        return ToolResult(
            content=[_dump(block) for block in result.content],
            structured_content=result.structured_content,
            is_error=bool(result.is_error),
            duration_ms=round((time.perf_counter() - started_s) * 1000, 3),
        )

    async def get_prompt(self, prompt: str, arguments: dict[str, str]) -> PromptResult:
        """Render one prompt.

        Raises:
            RejectedParamsError, MethodNotSupportedError, UpstreamError, ServerUnavailableError,
                UpstreamTimeoutError: as for `call_tool`.
        """
        client = self._ready_client()
        with (
            self._mapped_errors("prompts/get", f"getting prompt {prompt!r}"),
            anyio.fail_after(self.spec.call_timeout_s),
        ):
            result = await client.get_prompt(prompt, arguments)
        return PromptResult(description=result.description, messages=[_dump(m) for m in result.messages])

    async def read_resource(self, uri: str) -> ResourceContents:
        """Read one resource.

        Raises:
            ResourceNotFoundError: the server does not know the URI.
            RejectedParamsError, MethodNotSupportedError, UpstreamError, ServerUnavailableError,
                UpstreamTimeoutError: as for `call_tool`.
        """
        client = self._ready_client()
        with (
            self._mapped_errors("resources/read", f"reading {shown_uri(uri)}", uri=uri),
            anyio.fail_after(self.spec.call_timeout_s),
        ):
            result = await client.read_resource(uri)
        return ResourceContents(server=self.name, contents=[_dump(item) for item in result.contents])

    @contextmanager
    def _mapped_errors(self, method: str, what: str, uri: str | None = None) -> Iterator[None]:
        """Turn SDK and transport failures of one call into our errors, and flag a lost connection."""
        try:
            yield
        except TimeoutError as exc:
            raise self._timeout_error(what) from exc
        except MCPError as exc:
            raise self._answered_error(exc, method, what, uri) from exc
        except (httpx2.HTTPError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise self._lost_error(what) from exc

    def _answered_error(self, exc: MCPError, method: str, what: str, uri: str | None) -> AppError:
        """Our error for an `MCPError`, by what its code means; the one place MCP error codes are read.

        -32602 (invalid params) is the caller's fault: 422. -32601 (method not found) means the server does not
        offer that method: 501. Resource-not-found is 404 in both protocol eras: -32002 on legacy servers, and
        on 2026-07-28 (SEP-2164) -32602 whose `data` carries the `uri`, as the SDK's MCPServer sends it. The SDK's
        own -32001 (timeout) and -32000 (connection closed) are 504 and 503; anything else a server answers is 502.
        """
        code, message = exc.code, _server_message(exc)
        if code == mcp_types.REQUEST_TIMEOUT:
            return self._timeout_error(what)
        if code == mcp_types.CONNECTION_CLOSED:
            return self._lost_error(what)
        if method == "resources/read" and _is_resource_not_found(exc):
            return ResourceNotFoundError(
                f"MCP server {self.name!r} has no resource {shown_uri(uri or '')}; GET /v1/resources lists what it "
                "offers.",
                server=self.name,
            )
        if code == mcp_types.INVALID_PARAMS:
            return RejectedParamsError(
                f"MCP server {self.name!r} rejected the parameters for {what}: {message}. Correct them and try again.",
                server=self.name,
                code=code,
            )
        if code == mcp_types.METHOD_NOT_FOUND:
            return MethodNotSupportedError(
                f"MCP server {self.name!r} does not support {method}; retrying will not help: "
                "use another server, or a version of this one that supports it.",
                server=self.name,
                method=method,
                code=code,
            )
        return UpstreamError(
            f"MCP server {self.name!r} failed {what}: {message} (JSON-RPC error {code}). "
            f"Try again; if it keeps failing, see its status at GET /v1/servers/{self.name}.",
            server=self.name,
            code=code,
        )

    def _timeout_error(self, what: str) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"MCP server {self.name!r} did not answer {what} within timeout_s={self.spec.call_timeout_s:g}; "
            "the call was cancelled.",
            server=self.name,
        )

    def _lost_error(self, what: str) -> ServerUnavailableError:
        self._lost.set()
        return ServerUnavailableError(
            f"MCP server {self.name!r} went away while {what}; it is reconnecting, try again shortly.",
            server=self.name,
        )


def _is_resource_not_found(exc: MCPError) -> bool:
    if exc.code == _LEGACY_RESOURCE_NOT_FOUND:
        return True
    return exc.code == mcp_types.INVALID_PARAMS and isinstance(exc.data, dict) and "uri" in exc.data


def _server_message(exc: MCPError) -> str:
    """The server's error text on one line, bounded: it is quoted to API clients and the model."""
    text = " ".join(exc.message.split()).rstrip(".") or "no message"
    if len(text) > _SERVER_MESSAGE_MAX_CHARS:
        text = text[:_SERVER_MESSAGE_MAX_CHARS] + "..."
    return text


class _StreamsTransport:
    """Hands already-open streams to `Client`, so we own the transport's lifetime ourselves."""

    def __init__(self, streams: TransportStreams) -> None:
        self.streams = streams

    async def __aenter__(self) -> TransportStreams:
        return self.streams

    async def __aexit__(self, *_exc: object) -> None:
        return None


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], items: Callable[[Any], list[Any]]) -> list[Any]:
    collected: list[Any] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGE_CAP):
        page = await fetch(cursor)
        collected.extend(items(page))
        cursor = page.next_cursor
        if not cursor:
            break
    return collected


def _dump(model: Any) -> JsonObject:
    dumped: JsonObject = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def prompt_arguments(prompt: mcp_types.Prompt) -> list[PromptArgument]:
    """Our view of a prompt's arguments."""
    return [
        PromptArgument(name=arg.name, description=arg.description, required=bool(arg.required))
        for arg in prompt.arguments or []
    ]


def _describe(exc: BaseException) -> str:
    """One line for an error, looking inside the ExceptionGroups the SDK's task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
