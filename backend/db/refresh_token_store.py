"""RefreshTokenStore: refresh tokens, kept only as hashes (`backend.db.hashes`), rotated on every use (RFC 9700
section 4.14)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import Connection, insert, select, update

from backend.db.database import Database
from backend.db.hashes import secret_hash
from backend.db.models import RefreshToken, aware_utc, new_id, utcnow

TOKEN_BYTES = 32


class Rotation(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"  # never issued, expired, or its session was signed out
    REUSED = "reused"  # already replaced: someone holds a copy, so the whole session was revoked


@dataclass(frozen=True, slots=True)
class RotationResult:
    outcome: Rotation
    user_id: str | None = None
    token: str | None = None  # the next token, when rotated


class RefreshTokenStore:
    def __init__(self, database: Database, ttl_s: int) -> None:
        self.database, self._ttl = database, timedelta(seconds=ttl_s)

    async def issue(self, user_id: str) -> str:
        """The first refresh token of a new session."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        await self.database.write(lambda connection: self._insert(connection, user_id, new_id(), token, utcnow()))
        return token

    async def rotate(self, token: str) -> RotationResult:
        """Replace `token` with the next one of its session; a token used twice revokes the session."""
        next_token = secrets.token_urlsafe(TOKEN_BYTES)

        def write(connection: Connection) -> RotationResult:
            now = utcnow()
            row = connection.execute(
                select(
                    RefreshToken.id,
                    RefreshToken.user_id,
                    RefreshToken.family_id,
                    RefreshToken.expires_at,
                    RefreshToken.used_at,
                    RefreshToken.revoked_at,
                )
                .where(RefreshToken.token_hash == secret_hash(token))
                .with_for_update()
            ).first()
            if row is None or row.revoked_at is not None or aware_utc(row.expires_at) <= now:
                return RotationResult(Rotation.UNKNOWN)
            if row.used_at is not None:
                _revoke_family(connection, row.family_id, now)
                return RotationResult(Rotation.REUSED, user_id=row.user_id)
            connection.execute(update(RefreshToken).where(RefreshToken.id == row.id).values(used_at=now))
            self._insert(connection, row.user_id, row.family_id, next_token, now)
            return RotationResult(Rotation.ROTATED, user_id=row.user_id, token=next_token)

        return await self.database.write(write)

    async def revoke_session(self, token: str) -> str | None:
        """Sign out the session `token` belongs to; its user's id, or None for a token not known."""

        def write(connection: Connection) -> str | None:
            row = connection.execute(
                select(RefreshToken.user_id, RefreshToken.family_id).where(
                    RefreshToken.token_hash == secret_hash(token)
                )
            ).first()
            if row is None:
                return None
            _revoke_family(connection, row.family_id, utcnow())
            return str(row.user_id)

        return await self.database.write(write)

    async def revoke_user(self, user_id: str) -> None:
        """Sign the user out of every session."""
        await self.database.write(
            lambda connection: connection.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        )

    def _insert(self, connection: Connection, user_id: str, family_id: str, token: str, now: datetime) -> None:
        connection.execute(
            insert(RefreshToken).values(
                id=new_id(),
                user_id=user_id,
                family_id=family_id,
                token_hash=secret_hash(token),
                created_at=now,
                expires_at=now + self._ttl,
            )
        )


def _revoke_family(connection: Connection, family_id: str, now: datetime) -> None:
    connection.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
