"""ApiKeyStore: API keys, kept only as hashes (`backend.db.hashes`); the key itself is shown once, at creation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from backend.db.database import Database
from backend.db.hashes import secret_hash
from backend.db.models import ApiKey, User, aware_utc, new_id, utcnow
from backend.errors import NotFoundError

KEY_PREFIX = "mcpc_"
KEY_BYTES = 32
SHOWN_PREFIX_CHARS = 12  # "mcpc_" and 7 characters: enough to tell a user's keys apart, nothing to guess with
# last_used_at is written at most this often per key: a key used on every request must not make every request a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyNotFoundError(NotFoundError):
    slug, title = "api-key-not-found", "API key not found"


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """A live key and the account it belongs to, as they are now."""

    key: ApiKey
    user: User


def is_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


class ApiKeyStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(
        self, user_id: str, name: str, scopes: list[str], expires_at: datetime | None
    ) -> tuple[ApiKey, str]:
        """A new key for the user, and its secret (shown this once; only its hash is kept)."""
        secret = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        key = ApiKey(
            id=new_id(),
            user_id=user_id,
            name=name,
            prefix=secret[:SHOWN_PREFIX_CHARS],
            key_hash=secret_hash(secret),
            scopes=" ".join(scopes),
            created_at=utcnow(),
            expires_at=expires_at,
        )

        def write(connection: Connection) -> None:
            with Session(connection) as session:
                session.add(key)
                session.flush()
                session.expunge(key)

        await self.database.write(write)
        return key, secret

    async def list(self, user_id: str) -> list[ApiKey]:
        """The user's keys that are not revoked, newest first."""

        def read(connection: Connection) -> list[ApiKey]:
            query = (
                select(ApiKey)
                .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
                .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            )
            with Session(connection) as session:
                keys = list(session.scalars(query).all())
                session.expunge_all()
                return keys

        return await self.database.read(read)

    async def revoke(self, user_id: str, key_id: str) -> None:
        """Revoke one of the user's keys: it stops working on the next request, in every process.

        Raises:
            ApiKeyNotFoundError: the user has no such key (another user's is not theirs).
        """

        def write(connection: Connection) -> None:
            revoked = connection.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if not revoked.rowcount:
                raise ApiKeyNotFoundError(f"You have no API key with the id {key_id!r}.")

        await self.database.write(write)

    async def revoke_user(self, user_id: str) -> None:
        """Revoke every key of the user."""
        await self.database.write(
            lambda connection: connection.execute(
                update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
        )

    async def owner_of(self, secret: str) -> KeyOwner | None:
        """The live (not revoked, not expired) key with this secret and its account; None for any other."""

        def read(connection: Connection) -> KeyOwner | None:
            query = (
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == secret_hash(secret))
            )
            with Session(connection) as session:
                row = session.execute(query).first()
                if row is None:
                    return None
                key, user = row
                session.expunge_all()
            now = utcnow()
            if key.revoked_at is not None or (key.expires_at is not None and aware_utc(key.expires_at) <= now):
                return None
            return KeyOwner(key, user)

        found = await self.database.read(read)
        if found is not None:
            last_used = found.key.last_used_at
            if last_used is None or utcnow() - aware_utc(last_used) >= LAST_USED_RESOLUTION:
                await self.database.write(
                    lambda connection: connection.execute(
                        update(ApiKey).where(ApiKey.id == found.key.id).values(last_used_at=utcnow())
                    )
                )
        return found
