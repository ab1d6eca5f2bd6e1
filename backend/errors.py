"""The application's error tree and its rendering as RFC 9457 problem+json.

    AppError (500 internal-error)
    ├── BadRequestError (400 bad-request)
    │   └── HostNotAllowedError (400 host-not-allowed): the Host header is not loopback nor in MCPCHAT_ALLOWED_HOSTS
    ├── OriginNotAllowedError (403 origin-not-allowed): a state-changing request from a foreign Origin
    ├── NotFoundError (404 not-found)
    │   ├── ToolNotFoundError (404 tool-not-found)
    │   ├── PromptNotFoundError (404 prompt-not-found)
    │   ├── ServerNotFoundError (404 mcp-server-not-found)
    │   └── ResourceNotFoundError (404 resource-not-found): also a server's -32002, or -32602 naming the uri
    ├── ConflictError (409 conflict)
    ├── PayloadTooLargeError (413 payload-too-large)
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


class BadRequestError(AppError):
    status, slug, title = 400, "bad-request", "Bad request"


class HostNotAllowedError(BadRequestError):
    slug, title = "host-not-allowed", "Host not allowed"


class OriginNotAllowedError(AppError):
    status, slug, title = 403, "origin-not-allowed", "Origin not allowed"


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
    return problem_response(exc.status, exc.slug, exc.title, exc.detail, exc.extra, path=request.url.path)


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
