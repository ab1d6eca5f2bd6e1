"""The application's error tree and its rendering as RFC 9457 problem+json.

    AppError (500 internal-error)
    ├── BadRequestError (400 bad-request)
    │   └── HostNotAllowedError (400 host-not-allowed): the Host header is not loopback nor in MCPCHAT_ALLOWED_HOSTS
    ├── UnauthorizedError (401 not-authenticated): no credential, with WWW-Authenticate
    │   ├── InvalidCredentialsError (401 invalid-credentials): a sign-in's email or password
    │   └── InvalidTokenError (401 invalid-token): a credential sent but not valid
    ├── ForbiddenError (403 forbidden): the caller's role does not allow it
    │   └── OriginNotAllowedError (403 origin-not-allowed): a state-changing request from a foreign Origin
    ├── NotFoundError (404 not-found)
    │   ├── ToolNotFoundError (404 tool-not-found)
    │   ├── PromptNotFoundError (404 prompt-not-found)
    │   ├── ServerNotFoundError (404 mcp-server-not-found)
    │   └── ResourceNotFoundError (404 resource-not-found): also a server's -32002, or -32602 naming the uri
    ├── ConflictError (409 conflict)
    ├── PayloadTooLargeError (413 payload-too-large)
    ├── RateLimitedError (429 rate-limited): with Retry-After and the RateLimit headers
    ├── TooManyRunningTurnsError (429 too-many-running-turns): a cap, not a rate, so no window and no Retry-After
    ├── RateLimitsUnavailableError (503 rate-limits-unavailable): Redis (MCPCHAT_REDIS_URL) did not answer
    ├── InvalidArgumentsError (422 invalid-arguments)
    │   ├── InvalidResourceUriError (422 invalid-resource-uri)
    │   └── RejectedParamsError (422 mcp-invalid-params): the server answered JSON-RPC -32602
    └── UpstreamError (502 mcp-error): any other JSON-RPC error a server answered
        ├── MethodNotSupportedError (501 mcp-method-not-supported): the server answered -32601
        ├── ServerUnavailableError (503 mcp-server-unavailable)
        └── UpstreamTimeoutError (504 mcp-timeout)

Framework and edge errors (unknown route, wrong method, request validation, body too large, foreign
Host or Origin) are rendered by the same function, so every error a client sees has one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import JsonValue
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from backend.logging import current_request_id

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


LEGACY_PREFIX = "/api/"


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: JsonValue) -> None:
        super().__init__(detail)
        self.detail, self.extra = detail, extra

    @property
    def headers(self) -> dict[str, str] | None:
        """Response headers the problem needs (a 401's challenge, a 429's Retry-After)."""
        return None


class BadRequestError(AppError):
    status, slug, title = 400, "bad-request", "Bad request"


class HostNotAllowedError(BadRequestError):
    slug, title = "host-not-allowed", "Host not allowed"


class UnauthorizedError(AppError):
    status, slug, title = 401, "not-authenticated", "Authentication required"
    # RFC 9110 section 11.6.1: a 401 names the scheme to authenticate with.
    challenge: ClassVar[str] = "Bearer"

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": self.challenge}


class InvalidCredentialsError(UnauthorizedError):
    slug, title = "invalid-credentials", "Invalid credentials"


class InvalidTokenError(UnauthorizedError):
    slug, title = "invalid-token", "Invalid token"
    challenge = 'Bearer error="invalid_token"'  # RFC 6750 section 3.1


class ForbiddenError(AppError):
    status, slug, title = 403, "forbidden", "Forbidden"


class OriginNotAllowedError(ForbiddenError):
    slug, title = "origin-not-allowed", "Origin not allowed"


class NotFoundError(AppError):
    status, slug, title = 404, "not-found", "Not found"


class ToolNotFoundError(NotFoundError):
    slug, title = "tool-not-found", "Tool not found"


class PromptNotFoundError(NotFoundError):
    slug, title = "prompt-not-found", "Prompt not found"


class ServerNotFoundError(NotFoundError):
    slug, title = "mcp-server-not-found", "MCP server not found"


class ResourceNotFoundError(NotFoundError):
    slug, title = "resource-not-found", "Resource not found"


class ConflictError(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class InvalidArgumentsError(AppError):
    status, slug, title = 422, "invalid-arguments", "Invalid arguments"


class InvalidResourceUriError(InvalidArgumentsError):
    slug, title = "invalid-resource-uri", "Invalid resource URI"


class RejectedParamsError(InvalidArgumentsError):
    slug, title = "mcp-invalid-params", "Parameters rejected by the MCP server"


class PayloadTooLargeError(AppError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class RateLimitedError(AppError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, policy: str, limit: int, window_s: int, retry_after_s: int) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)
        self.policy, self.limit, self.window_s, self.retry_after_s = policy, limit, window_s, retry_after_s

    @property
    def headers(self) -> dict[str, str] | None:
        # RateLimit-Policy and RateLimit as the IETF httpapi draft writes them: quota, window, remaining, reset.
        return {
            "Retry-After": str(self.retry_after_s),
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window_s}',
            "RateLimit": f'"{self.policy}";r=0;t={self.retry_after_s}',
        }


class TooManyRunningTurnsError(AppError):
    status, slug, title = 429, "too-many-running-turns", "Too many running turns"


class RateLimitsUnavailableError(AppError):
    status, slug, title = 503, "rate-limits-unavailable", "Rate limits unavailable"


class UpstreamError(AppError):
    status, slug, title = 502, "mcp-error", "MCP server error"


class MethodNotSupportedError(UpstreamError):
    status, slug, title = 501, "mcp-method-not-supported", "Not supported by the MCP server"


class ServerUnavailableError(UpstreamError):
    status, slug, title = 503, "mcp-server-unavailable", "MCP server unavailable"


class UpstreamTimeoutError(UpstreamError):
    status, slug, title = 504, "mcp-timeout", "MCP call timed out"


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    extra: Mapping[str, JsonValue] | None = None,
    headers: Mapping[str, str] | None = None,
    path: str = "",
) -> Response:
    """Render one problem as `application/problem+json` carrying the request id.

    Under the legacy `/api/` prefix the body also carries `error` (the detail): the old clients read that.
    """
    body: dict[str, JsonValue] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
    }
    body.update(extra or {})
    if path.startswith(LEGACY_PREFIX):
        body["error"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


async def _on_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status >= 500:
        log.warning("request.failed", problem=exc.slug, detail=exc.detail)
    return problem_response(
        exc.status, exc.slug, exc.title, exc.detail, exc.extra, headers=exc.headers, path=request.url.path
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    phrase = HTTPStatus(status).phrase
    if status == 404:
        detail = f"There is no route {request.url.path}; see /docs for the API."
    elif status == 405:
        detail = (
            f"{request.method} is not allowed on {request.url.path}; allowed: {(exc.headers or {}).get('Allow', '?')}."
        )
    else:
        detail = str(exc.detail) if exc.detail else phrase
    slug = phrase.lower().replace(" ", "-").replace("'", "")
    return problem_response(status, slug, phrase, detail, headers=exc.headers, path=request.url.path)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[JsonValue] = [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]} for error in exc.errors()
    ]
    first = errors[0] if errors else {}
    summary = f"{first['field']}: {first['message']}" if isinstance(first, dict) and first else "invalid request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{summary}{more}"
    return problem_response(
        422, "validation-error", "Invalid request", detail, {"errors": errors}, path=request.url.path
    )


async def render_crash(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer an unexpected error as a 500 problem; the trace stays in our log."""
    detail = "The server failed unexpectedly; see its log."
    response = problem_response(500, AppError.slug, AppError.title, detail, path=scope.get("path", ""))
    await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
