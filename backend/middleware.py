"""ASGI middleware that guards the app's edge: security headers, the Host and Origin guard, the body size limit."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.config import bare_host, is_loopback_host
from backend.errors import AppError, HostNotAllowedError, OriginNotAllowedError, PayloadTooLargeError, problem_response

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No type sniffing (a JSON answer is never run as a script or page), no URL of ours leaked in a Referer.
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
# Pages (/docs) may not be framed by another site. Only frame-ancestors: Swagger UI loads its scripts from a CDN.
_PAGE_POLICY = (b"content-security-policy", b"frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    """Add the security headers to every response's start, and the framing policy to every HTML page's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *_SECURITY_HEADERS]
                if any(key.lower() == b"content-type" and value.startswith(b"text/html") for key, value in headers):
                    headers.append(_PAGE_POLICY)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostOriginGuardMiddleware:
    """Answer only requests for this app's own host names, and take state-changing ones only from its own origins.

    DNS rebinding lets any page a local user opens reach 127.0.0.1 under the page's own name: a request whose Host is
    not a loopback name or address, nor in MCPCHAT_ALLOWED_HOSTS, gets a 400 problem. A page may also post a form
    straight to 127.0.0.1: a state-changing request whose Origin is neither the app's own (its scheme and Host) nor a
    CORS origin gets a 403 problem. Reads are left to CORS, which keeps their answers from other sites.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> None:
        self.app = app
        # As headers arrive, in bytes: a request for 127.0.0.1 or localhost is one set lookup, nothing decoded.
        self.hosts = frozenset(bare_host(host).encode() for host in (*_LOOPBACK_NAMES, *allowed_hosts))
        # `null` comes from sandboxed frames and file: pages, which are never ours.
        self.origins = frozenset(origin.lower().encode() for origin in allowed_origins) - {b"null"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host, origin = b"", None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
        name = _host_name(host)
        if name not in self.hosts and not is_loopback_host(name.decode("latin-1")):  # the latter: e.g. 127.0.0.2
            await _refuse(HostNotAllowedError, _host_detail(name), scope, receive, send)
            return
        if origin is not None and scope["method"] not in _SAFE_METHODS and not self._is_ours(origin, scope, host):
            await _refuse(OriginNotAllowedError, _origin_detail(scope["method"], origin), scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _is_ours(self, origin: bytes, scope: Scope, host: bytes) -> bool:
        origin = origin.lower()
        return origin in self.origins or origin == b"%s://%s" % (scope["scheme"].encode(), host.lower())


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with a 413 problem, by Content-Length or, for a streamed body, by counting.

    A body sent without Content-Length is read here first (never more than `max_bytes` of it is held) and
    replayed to the app, so the 413 is answered before any handler starts.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding") is None:
            await self.app(scope, receive, send)  # no body at all
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body is larger than MCPCHAT_MAX_BODY_BYTES={self.max_bytes} bytes."
        await _refuse(PayloadTooLargeError, detail, scope, receive, send)


def _host_name(host: bytes) -> bytes:
    """A Host header's name as the guard compares it: no port, an IPv6 address without brackets, lowercase."""
    return (host[1:].partition(b"]")[0] if host.startswith(b"[") else host.partition(b":")[0]).lower()


def _host_detail(name: bytes) -> str:
    allowed = "MCP Chat answers only requests for a loopback name or address, or a host in MCPCHAT_ALLOWED_HOSTS"
    if not name:
        return f"The request names no host (its Host header is missing or empty), and {allowed}."
    shown = name.decode("latin-1")
    return f"The request is for host {shown!r}, and {allowed}. If you serve MCP Chat under that name, add it there."


def _origin_detail(method: str, origin: bytes) -> str:
    shown = origin.decode("latin-1")
    return (
        f"A {method} from origin {shown!r} is refused: requests that change anything must come from this app's own "
        "origin or one in MCPCHAT_CORS_ORIGINS. If that origin is yours, add it there."
    )


async def _refuse(error: type[AppError], detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `error` as a problem before the app sees the request (legacy paths get `error` too)."""
    response = problem_response(error.status, error.slug, error.title, detail, path=scope["path"])
    await response(scope, receive, send)


def _replay(messages: list[Message], last: Message | None, receive: Receive) -> Receive:
    """A `receive` that hands out already-read messages first, then defers to the real one."""
    pending = [*messages, *([last] if last is not None else [])]

    async def replaying_receive() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying_receive
