"""Liveness and readiness probes."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from backend.api.schemas import HealthResponse, ReadinessResponse
from backend.deps import Database, Mcp

DATABASE_PING_TIMEOUT_S = 2.0

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> HealthResponse:
    """200 while the process serves requests."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}})
async def readyz(mcp: Mcp, database: Database) -> JSONResponse:
    """200 once every MCP server has left `starting` (failed ones included) and the database answers; 503 before.

    Statuses are listed either way."""
    try:
        with anyio.fail_after(DATABASE_PING_TIMEOUT_S):
            await database.ping()
        database_status = "ok"
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        database_status = f"unreachable: {type(exc).__name__}"
    is_ready = mcp.is_settled() and database_status == "ok"
    body = ReadinessResponse(
        status="ready" if is_ready else "starting",
        database=database_status,
        servers={s.name: s.status.value for s in mcp.servers()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if is_ready else 503)
