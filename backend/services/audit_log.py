"""The audit log: security-relevant events, stored (GET /v1/audit) and logged as `audit.recorded` lines.

Callers pass ids, addresses and plain facts; never a password, token or key (tests grep for them).
"""

from __future__ import annotations

from typing import Any

import structlog

from backend.db.audit_store import AuditStore
from backend.db.models import AuditEvent

log = structlog.get_logger("audit")


class AuditLog:
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def record(
        self,
        event: str,
        *,
        actor_id: str | None = None,
        subject_id: str | None = None,
        address: str | None = None,
        **details: Any,
    ) -> None:
        log.info("audit.recorded", action=event, actor_id=actor_id, subject_id=subject_id, address=address, **details)
        await self._store.append(event, actor_id, subject_id, address, details)

    async def page(self, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        """Newest first.

        Raises:
            BadRequestError: the cursor was not one this API issued.
        """
        return await self._store.page(limit, cursor)
