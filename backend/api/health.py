"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend.api.schemas import HealthResponse, ReadinessResponse
from backend.deps import Mcp

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> HealthResponse:
    """200 while the process serves requests."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}})
async def readyz(mcp: Mcp) -> JSONResponse:
    """200 once every MCP server has left `starting` (failed ones included); 503 before. Statuses are listed."""
    is_ready = mcp.is_settled()
    body = ReadinessResponse(
        status="ready" if is_ready else "starting", servers={s.name: s.status.value for s in mcp.servers()}
    )
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503)
