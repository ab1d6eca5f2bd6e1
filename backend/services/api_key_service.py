"""API keys: made by an account for one client, limited to scopes, revocable at once."""

from __future__ import annotations

from datetime import datetime

from backend.auth.principal import AuthMethod, Principal, Scope
from backend.db.api_key_store import ApiKeyStore
from backend.db.models import ApiKey, utcnow
from backend.errors import ForbiddenError, InvalidArgumentsError


class ApiKeyService:
    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

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
        return await self._store.create(caller.user_id, name, sorted(set(scopes)), expires_at)

    async def list(self, caller: Principal) -> list[ApiKey]:
        return await self._store.list(caller.user_id)

    async def revoke(self, caller: Principal, key_id: str) -> None:
        """Raises:
        ApiKeyNotFoundError: the caller has no such key."""
        await self._store.revoke(caller.user_id, key_id)
