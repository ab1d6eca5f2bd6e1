"""/v1/resources: resources and resource templates of every ready server, and reading one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import Page, paginate
from backend.deps import Cursor, Limit, Mcp
from backend.mcp.models import ResourceContents, ResourceInfo, ResourceTemplateInfo

router = APIRouter(prefix="/v1/resources", tags=["resources"])


@router.get("")
async def list_resources(mcp: Mcp, limit: Limit = 1000, cursor: Cursor = None) -> Page[ResourceInfo]:
    """Resources of every ready server."""
    return paginate(mcp.resources(), limit, cursor)


@router.get("/templates")
async def list_resource_templates(mcp: Mcp, limit: Limit = 1000, cursor: Cursor = None) -> Page[ResourceTemplateInfo]:
    """Resource templates (RFC 6570 URIs) of every ready server."""
    return paginate(mcp.resource_templates(), limit, cursor)


@router.get("/read")
async def read_resource(
    mcp: Mcp,
    request: Request,
    uri: Annotated[str, Query(min_length=1, max_length=4096)],
    server: Annotated[str | None, Query(max_length=64)] = None,
) -> ResourceContents:
    """Read a resource; without `server`, the server listing the URI (or a matching template) is asked."""
    return await cancel_on_disconnect(request, lambda: mcp.read_resource(uri, server))
