"""AuditStore: the audit log's rows, appended and paged newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_
from sqlalchemy.orm import Session

from backend.cursors import decode_cursor, encode_cursor
from backend.db.database import Database
from backend.db.models import AuditEvent, new_id, utcnow


class AuditStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def append(
        self, event: str, actor_id: str | None, subject_id: str | None, address: str | None, details: dict[str, Any]
    ) -> None:
        row = {
            "id": new_id(),
            "created_at": utcnow(),
            "event": event,
            "actor_id": actor_id,
            "subject_id": subject_id,
            "address": address,
            "details": details,
        }
        await self.database.write(lambda connection: connection.execute(insert(AuditEvent).values(row)))

    async def page(self, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        """Newest first, keyset-paginated on (created_at, id).

        Raises:
            BadRequestError: the cursor was not one this API issued.
        """
        query = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor, datetime, str)
            query = query.where(tuple_(AuditEvent.created_at, AuditEvent.id) < (created_at, last_id))

        def read(connection: Connection) -> list[AuditEvent]:
            with Session(connection) as session:
                rows = list(session.scalars(query.limit(limit + 1)).all())
                session.expunge_all()
                return rows

        rows = await self.database.read(read)
        if len(rows) <= limit:
            return rows, None
        last = rows[limit - 1]
        return rows[:limit], encode_cursor(last.created_at, last.id)
