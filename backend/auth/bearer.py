"""Multi-user mode's authenticator: an API key (`Authorization: Bearer mcpc_...` or `X-API-Key`) or an access
token from signing in (`Authorization: Bearer <JWT>`)."""

from __future__ import annotations

from starlette.requests import Request

from backend.auth.principal import AuthMethod, Principal, Scope
from backend.db.api_key_store import ApiKeyStore, is_api_key
from backend.db.models import UserRole
from backend.errors import InvalidTokenError, UnauthorizedError
from backend.services.session_service import SessionService

NO_CREDENTIAL = (
    "This route needs a credential: send `Authorization: Bearer <access token>` (POST /v1/auth/login) or an API "
    "key (`Authorization: Bearer mcpc_...` or `X-API-Key`)."
)


class BearerAuthenticator:
    def __init__(self, sessions: SessionService, api_keys: ApiKeyStore) -> None:
        self._sessions, self._api_keys = sessions, api_keys

    async def authenticate(self, request: Request) -> Principal:
        """Raises:
        UnauthorizedError: no credential was sent.
        InvalidTokenError: one was, and it is not valid (or its account is disabled)."""
        credential = request.headers.get("x-api-key", "").strip()
        if not credential:
            scheme, _, credential = request.headers.get("authorization", "").partition(" ")
            credential = credential.strip() if scheme.lower() == "bearer" else ""
        if not credential:
            raise UnauthorizedError(NO_CREDENTIAL)
        if is_api_key(credential):
            return await self._key_holder(credential)
        return await self._sessions.authenticate(credential)

    async def _key_holder(self, secret: str) -> Principal:
        found = await self._api_keys.owner_of(secret)
        if found is None:
            raise InvalidTokenError("The API key is not valid: unknown, revoked or expired.")
        if found.user.is_disabled:
            raise InvalidTokenError("The API key's account is disabled.")
        scopes = frozenset(Scope(scope) for scope in found.key.scopes.split())
        return Principal(found.user.id, UserRole(found.user.role), AuthMethod.API_KEY, found.key.id, scopes)
