"""create_app(settings): the FastAPI app, its lifespan, error handlers and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import structlog
from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from backend.api import (
    accounts,
    api_keys,
    audit,
    auth,
    chat,
    conversations,
    health,
    prompts,
    resources,
    servers,
    tools,
    users,
)
from backend.api.openapi import secured_openapi
from backend.auth.bearer import BearerAuthenticator
from backend.auth.principal import SingleUserAuthenticator
from backend.auth.tokens import SECRET_KEY_FILE, AccessTokens, load_signing_keys
from backend.clients.counter_store import open_counter_store
from backend.config import AuthMode, Settings
from backend.db.api_key_store import ApiKeyStore
from backend.db.audit_store import AuditStore
from backend.db.database import open_database
from backend.db.migrate import upgrade
from backend.db.refresh_token_store import RefreshTokenStore
from backend.db.repositories import ConversationStore
from backend.db.user_store import UserStore
from backend.deps import AppState, current_user
from backend.errors import install_error_handlers, render_crash
from backend.logging import RequestContextMiddleware
from backend.mcp.servers_file import ServerSpec, load_servers_file
from backend.middleware import BodySizeLimitMiddleware, HostOriginGuardMiddleware, SecurityHeadersMiddleware
from backend.services.api_key_service import ApiKeyService
from backend.services.audit_log import AuditLog
from backend.services.chat_service import ChatService
from backend.services.conversation_service import ConversationService
from backend.services.llm_provider import LLMNotConfiguredError, LLMProvider
from backend.services.mcp_service import McpService
from backend.services.openai_service import OpenAIProvider
from backend.services.rate_limits import RateLimits
from backend.services.session_service import SessionService
from backend.services.tokens import load_token_counter
from backend.services.usage_limits import UsageLimits
from backend.services.user_service import UserService

log = structlog.get_logger(__name__)


def create_app(settings: Settings, specs: Sequence[ServerSpec] | None = None) -> FastAPI:
    """Build the app. The servers file is read here, so a broken one stops start-up with its message; so does an
    unreachable Redis (MCPCHAT_REDIS_URL) in the lifespan.

    Raises:
        ServersFileError: the servers file cannot be used.
    """
    server_specs = list(specs) if specs is not None else load_servers_file(settings.servers_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        async with AsyncExitStack() as stack:
            # First: an unreachable Redis stops start-up before any server process is spawned.
            redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
            rate_limits = RateLimits(await stack.enter_async_context(open_counter_store(redis_url)))
            database = open_database(settings.database_url)
            stack.push_async_callback(database.aclose)
            await upgrade(database)
            store = ConversationStore(database)
            interrupted = await store.mark_interrupted()
            if interrupted:
                log.warning("chat.turns.interrupted", count=interrupted)
            mcp = await stack.enter_async_context(McpService(server_specs, settings).running())
            provider = _provider(settings)
            if provider is not None:
                stack.push_async_callback(provider.aclose)
            tokens = await load_token_counter(settings.model)
            usage = UsageLimits(rate_limits, settings.chat_rate, settings.tools_rate)
            chat = ChatService(store, mcp, provider, settings, tokens, usage)
            conversations = ConversationService(store, chat.running)
            # The running services, for code that embeds the app (tests, benchmarks).
            app.state.mcp, app.state.chat = mcp, chat
            # Where requests watch for their client's disconnect (backend/api/disconnect.py); stopped first.
            watchers = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(watchers.cancel_scope.cancel)
            log.info(
                "app.started",
                servers=len(server_specs),
                env=settings.env.value,
                model=settings.model if provider is not None else None,
                exact_tokens=tokens.exact,
            )
            user_store, keys = UserStore(database), ApiKeyStore(database)
            refresh_tokens = RefreshTokenStore(database, settings.refresh_token_ttl_s)
            audit_log = AuditLog(AuditStore(database))
            sessions = _sessions(settings, user_store, refresh_tokens, audit_log)
            yield AppState(
                settings=settings,
                mcp=mcp,
                chat=chat,
                conversations=conversations,
                database=database,
                users=UserService(user_store, refresh_tokens, keys, audit_log),
                api_keys=ApiKeyService(keys, audit_log),
                audit=audit_log,
                sessions=sessions,
                authenticator=(
                    BearerAuthenticator(sessions, keys) if sessions is not None else SingleUserAuthenticator()
                ),
                rate_limits=rate_limits,
                usage=usage,
                watchers=watchers,
            )
            log.info("app.stopping")

    app = FastAPI(
        title="MCP Chat",
        version="0.1.0",
        summary="Chat with an LLM that uses tools from any number of MCP servers.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Most requested first: FastAPI tries routes in order, and a chat turn's should not wait behind every other.
    # No two routers share a path. Every route needs the caller (in multi-user mode, a credential) but health checks
    # and sign-in's own (an API key also needs the route's scope: backend/auth/scopes.py).
    protected = (
        conversations.router,
        chat.router,
        tools.router,
        tools.legacy_router,
        servers.router,
        servers.legacy_router,
        prompts.router,
        resources.router,
        accounts.router,
        api_keys.router,
        users.router,
        audit.router,
    )
    for router in protected:
        app.include_router(router, dependencies=[Depends(current_user)])
    app.include_router(auth.router)
    app.include_router(health.router)
    # Replacing app.openapi is how FastAPI's documentation customizes the schema; mypy sees a method assigned.
    app.openapi = secured_openapi(app, protected)  # type: ignore[method-assign]
    # Added innermost first: request context wraps everything but the security headers, so even a 413 carries the
    # request id, and the headers are on every answer, a crash's included. The Host and Origin guard comes before
    # CORS, so a preflight for a foreign host is refused too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(
        HostOriginGuardMiddleware, allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins
    )
    app.add_middleware(RequestContextMiddleware, render_crash=render_crash)
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.trusted_proxies:  # outermost: the client address and scheme every layer sees are the real ones
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def _sessions(
    settings: Settings, users: UserStore, refresh_tokens: RefreshTokenStore, audit: AuditLog
) -> SessionService | None:
    """Sign-in sessions in multi-user mode, signing with the configured keys or the one kept in the data folder;
    None in single-user mode."""
    if settings.auth is not AuthMode.MULTI_USER:
        return None
    configured = [key.get_secret_value() for key in settings.secret_keys]
    keys = load_signing_keys(configured, settings.data_dir / SECRET_KEY_FILE)
    access_tokens = AccessTokens(keys, settings.access_token_ttl_s)
    return SessionService(users, refresh_tokens, access_tokens, audit)


def _provider(settings: Settings) -> LLMProvider | None:
    """The configured model provider; None when none is configured (chat then answers 503, tools still work)."""
    try:
        return OpenAIProvider(settings)
    except LLMNotConfiguredError:
        log.warning("llm.not_configured", hint="set OPENAI_API_KEY or OPENAI_BASE_URL to enable chat")
        return None
