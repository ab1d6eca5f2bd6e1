"""/v1/audit: the audit log, newest first, for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from backend.api.schemas import AuditEventOut, Page
from backend.api.views import audit_event_out
from backend.deps import Audit, Cursor, require_admin

router = APIRouter(prefix="/v1/audit", tags=["accounts"], dependencies=[Depends(require_admin)])

AuditLimit = Annotated[int, Query(ge=1, le=500, description="Events per page")]


@router.get("")
async def list_audit_events(audit: Audit, limit: AuditLimit = 100, cursor: Cursor = None) -> Page[AuditEventOut]:
    """Sign-ins and their failures, sign-outs, refresh-token reuse, API keys made and revoked, accounts made, role
    changes, accounts disabled and enabled: who, to whom, from where. Never a secret."""
    rows, next_cursor = await audit.page(limit, cursor)
    return Page[AuditEventOut](items=[audit_event_out(row) for row in rows], next_cursor=next_cursor)
