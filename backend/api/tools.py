"""/v1/tools: the tools of every ready server, and calling one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import Page, ToolCallRequest, paginate
from backend.deps import CurrentUser, Cursor, Limit, Mcp, Usage
from backend.mcp.models import ToolInfo, ToolResult

router = APIRouter(prefix="/v1/tools", tags=["tools"])


@router.get("")
async def list_tools(mcp: Mcp, limit: Limit = 1000, cursor: Cursor = None) -> Page[ToolInfo]:
    """Tools of every ready server, named `<server>__<tool>`, with their schemas as the server gave them."""
    return paginate(mcp.tools(), limit, cursor)


@router.get("/{name}")
async def get_tool(name: str, mcp: Mcp) -> ToolInfo:
    """One tool by its exposed name."""
    return mcp.tool(name)


@router.post("/{name}/call")
async def call_tool(
    name: str, body: ToolCallRequest, mcp: Mcp, user: CurrentUser, usage: Usage, request: Request
) -> ToolResult:
    """Call a tool. Arguments are checked against its input schema first; a tool error is a 200 with is_error.
    Each call counts against MCPCHAT_RATE_TOOLS."""
    await usage.count_tool_call(user)
    return await cancel_on_disconnect(request, lambda: mcp.call_tool(name, body.arguments))


legacy_router = APIRouter(prefix="/api", tags=["legacy"])


@legacy_router.get("/tools")
async def legacy_tools(mcp: Mcp) -> dict[str, list[dict[str, Any]]]:
    """Tools in OpenAI function format, as the old app listed them; `_server` names the MCP server."""
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or tool.title or "",
                    "parameters": tool.input_schema,
                },
                "_server": tool.server,
            }
            for tool in mcp.tools()
        ]
    }
