"""/v1/resources: resources and resource templates of every ready server, and reading one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import Page, paginate
from backend.deps import CurrentUser, Cursor, Limit, Mcp, Usage
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
    user: CurrentUser,
    usage: Usage,
    request: Request,
    uri: str,  # checked by the service (backend/mcp/input_check.py), which words what is wrong with it
    server: Annotated[str | None, Query(max_length=64)] = None,
) -> ResourceContents:
    """Read a resource; without `server`, the server listing the URI (or a matching template) is asked.

    A URI that is not RFC 3986, holds control characters or whitespace, or is too long is
    answered 422 (`/problems/invalid-resource-uri`) before any server is asked. Counts against MCPCHAT_RATE_TOOLS.
    """
    await usage.count_tool_call(user)
    return await cancel_on_disconnect(request, lambda: mcp.read_resource(uri, server))
