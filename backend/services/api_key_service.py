"""API keys: made by an account for one client, limited to scopes, revocable at once."""

from __future__ import annotations

from datetime import datetime

from backend.auth.principal import AuthMethod, Principal, Scope
from backend.db.api_key_store import ApiKeyStore
from backend.db.models import ApiKey, utcnow
from backend.errors import ForbiddenError, InvalidArgumentsError
from backend.services.audit_log import AuditLog


class ApiKeyService:
    def __init__(self, store: ApiKeyStore, audit: AuditLog) -> None:
        self._store, self._audit = store, audit

    async def create(
        self, caller: Principal, name: str, scopes: list[Scope], expires_at: datetime | None
    ) -> tuple[ApiKey, str]:
        """A new key for the caller, and its secret (shown this once).

        Raises:
            ForbiddenError: the caller used an API key (a key cannot make keys), or asked for `admin` without being
                an admin.
            InvalidArgumentsError: no scopes, or an expiry in the past.
        """
        if caller.method is AuthMethod.API_KEY:
            raise ForbiddenError("An API key cannot make API keys: sign in to make one.")
        if Scope.ADMIN in scopes and not caller.is_admin:
            raise ForbiddenError("Only an admin may make a key with the admin scope.")
        if not scopes:
            raise InvalidArgumentsError(f"A key needs at least one scope of {', '.join(Scope)}.")
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidArgumentsError("expires_at is in the past: give a time to come, or none.")
        key, secret = await self._store.create(caller.user_id, name, sorted(set(scopes)), expires_at)
        await self._audit.record("api_key.created", actor_id=caller.user_id, subject_id=key.id, scopes=key.scopes)
        return key, secret

    async def list(self, caller: Principal) -> list[ApiKey]:
        return await self._store.list(caller.user_id)

    async def revoke(self, caller: Principal, key_id: str) -> None:
        """Raises:
        ApiKeyNotFoundError: the caller has no such key."""
        await self._store.revoke(caller.user_id, key_id)
        await self._audit.record("api_key.revoked", actor_id=caller.user_id, subject_id=key_id)
