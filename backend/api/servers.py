"""/v1/servers: configured MCP servers, their status, and reconnecting one on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from backend.api.schemas import Page, paginate
from backend.deps import Cursor, Limit, Mcp, require_admin
from backend.mcp.models import ServerState

router = APIRouter(prefix="/v1/servers", tags=["servers"])


@router.get("")
async def list_servers(mcp: Mcp, limit: Limit = 1000, cursor: Cursor = None) -> Page[ServerState]:
    """Every configured server with its status, transport, protocol version and counts."""
    return paginate(mcp.servers(), limit, cursor)


@router.get("/{name}")
async def get_server(name: str, mcp: Mcp) -> ServerState:
    """One server's status; `error` says why it is failed or reconnecting."""
    return mcp.connection(name).state()


@router.post("/{name}/reconnect", status_code=202, dependencies=[Depends(require_admin)])
async def reconnect_server(name: str, mcp: Mcp) -> ServerState:
    """Drop and re-open the connection to one server (a stdio server is restarted). Admins only."""
    connection = mcp.connection(name)
    connection.request_reconnect()
    return connection.state()


legacy_router = APIRouter(prefix="/api", tags=["legacy"])


@legacy_router.get("/servers")
async def legacy_servers(mcp: Mcp) -> dict[str, list[dict[str, Any]]]:
    """Every configured server as the old app listed them (plus `status`, which old clients ignore)."""
    return {
        "servers": [
            {
                "key": server.name,
                "name": server.description or server.name,
                "requires_auth": False,  # servers behind OAuth come with the authorization work
                "authenticated": False,
                "status": server.status.value,
            }
            for server in mcp.servers()
        ]
    }
