"""The OpenAPI document, with the security schemes every protected route takes.

Declared here rather than by a security dependency on each route: such a dependency runs on every request, and on a
chat turn it cost more than anything the declaration gives (see bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

SECURITY_SCHEMES: dict[str, Any] = {
    "AccessToken": {
        "type": "oauth2",
        "description": "A session's access token (POST /v1/auth/login), sent as `Authorization: Bearer`.",
        "flows": {"password": {"tokenUrl": "/v1/auth/token", "scopes": {}}},
    },
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key (mcpc_...)."},
}
# Either one: an operation's security lists alternatives.
SECURITY: list[dict[str, list[str]]] = [{"AccessToken": []}, {"ApiKey": []}]


def secured_openapi(app: FastAPI, protected: Iterable[APIRouter]) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, marking every operation of the `protected` routers as needing a credential."""
    operations = {
        (method.lower(), route.path)
        for router in protected
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, path_item in schema["paths"].items():
                for method, operation in path_item.items():
                    if (method, path) in operations:
                        operation["security"] = SECURITY
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
