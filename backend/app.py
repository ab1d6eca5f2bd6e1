"""create_app(settings): the FastAPI app, its lifespan, error handlers and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from backend.api import health, prompts, resources, servers, tools
from backend.config import Settings
from backend.deps import AppState
from backend.errors import install_error_handlers, render_crash
from backend.logging import RequestContextMiddleware
from backend.mcp.servers_file import ServerSpec, load_servers_file
from backend.middleware import BodySizeLimitMiddleware
from backend.services.mcp_service import McpService

log = structlog.get_logger(__name__)


def create_app(settings: Settings, specs: Sequence[ServerSpec] | None = None) -> FastAPI:
    """Build the app. The servers file is read here, so a broken one stops start-up with its message.

    Raises:
        ServersFileError: the servers file cannot be used.
    """
    server_specs = list(specs) if specs is not None else load_servers_file(settings.servers_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            mcp = await stack.enter_async_context(McpService(server_specs, settings).running())
            app.state.mcp = mcp  # the running service, for code that embeds the app
            log.info("app.started", servers=len(server_specs), env=settings.env.value)
            yield AppState(settings=settings, mcp=mcp)
            log.info("app.stopping")

    app = FastAPI(
        title="MCP Chat",
        version="0.1.0",
        summary="Chat with an LLM that uses tools from any number of MCP servers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, servers, tools, prompts, resources):
        app.include_router(module.router)
    # Added innermost first: request context wraps everything, so even a 413 carries the request id.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, render_crash=render_crash)
    return app
