"""/v1/prompts: prompts of every ready server, and rendering one."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend.api.disconnect import cancel_on_disconnect
from backend.api.schemas import Page, PromptGetRequest, paginate
from backend.deps import CurrentUser, Cursor, Limit, Mcp, Usage
from backend.mcp.models import PromptInfo, PromptResult

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])


@router.get("")
async def list_prompts(mcp: Mcp, limit: Limit = 1000, cursor: Cursor = None) -> Page[PromptInfo]:
    """Prompts of every ready server, named `<server>__<prompt>`."""
    return paginate(mcp.prompts(), limit, cursor)


@router.post("/{name}/get")
async def get_prompt(
    name: str, body: PromptGetRequest, mcp: Mcp, user: CurrentUser, usage: Usage, request: Request
) -> PromptResult:
    """Render a prompt with its arguments; counts against MCPCHAT_RATE_TOOLS."""
    await usage.count_tool_call(user)
    return await cancel_on_disconnect(request, lambda: mcp.get_prompt(name, body.arguments))
