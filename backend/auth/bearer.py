"""Multi-user mode's authenticator: `Authorization: Bearer <access token>`."""

from __future__ import annotations

from starlette.requests import Request

from backend.auth.principal import Principal
from backend.errors import UnauthorizedError
from backend.services.session_service import SessionService

NO_CREDENTIAL = "This route needs a credential: send `Authorization: Bearer <access token>` (POST /v1/auth/login)."


class BearerAuthenticator:
    def __init__(self, sessions: SessionService) -> None:
        self._sessions = sessions

    async def authenticate(self, request: Request) -> Principal:
        """Raises:
        UnauthorizedError: no credential was sent.
        InvalidTokenError: one was, and it is not valid (or its account is disabled)."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise UnauthorizedError(NO_CREDENTIAL)
        return await self._sessions.authenticate(credential.strip())
