"""Sign-in sessions: password sign-in, access tokens (JWT) and rotating refresh tokens, sign-out."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import SecretStr

from backend.auth.passwords import verify_password
from backend.auth.principal import AuthMethod, Principal
from backend.auth.tokens import AccessTokens
from backend.db.models import UserRole
from backend.db.refresh_token_store import RefreshTokenStore, Rotation
from backend.db.user_store import UserNotFoundError, UserStore
from backend.errors import InvalidCredentialsError, InvalidTokenError
from backend.services.audit_log import AuditLog

log = structlog.get_logger(__name__)

WRONG_CREDENTIALS = "The email or password is wrong."  # the same whichever it was, and for a disabled account


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int  # seconds
    refresh_token: str


class SessionService:
    def __init__(
        self, users: UserStore, refresh_tokens: RefreshTokenStore, access_tokens: AccessTokens, audit: AuditLog
    ) -> None:
        self._users, self._refresh, self._access, self._audit = users, refresh_tokens, access_tokens, audit

    async def sign_in(self, email: str, password: SecretStr, address: str | None = None) -> TokenPair:
        """A new session for the account with this email and password.

        Raises:
            InvalidCredentialsError: no such account, a wrong password, or a disabled account (one answer for all,
                taking about as long).
        """
        normalized = email.strip().lower()
        user = await self._users.find_by_email(normalized)
        is_match = await verify_password(password, user.password_hash if user is not None else None)
        if user is None or not is_match or user.is_disabled:
            subject = user.id if user is not None else None
            await self._audit.record("auth.sign_in.failed", subject_id=subject, address=address, email=normalized)
            raise InvalidCredentialsError(WRONG_CREDENTIALS)
        await self._users.record_login(user.id)
        await self._audit.record("auth.sign_in.succeeded", actor_id=user.id, address=address)
        return TokenPair(
            access_token=self._access.issue(user.id, UserRole(user.role)),
            expires_in=self._access.ttl_s,
            refresh_token=await self._refresh.issue(user.id),
        )

    async def refresh(self, refresh_token: SecretStr, address: str | None = None) -> TokenPair:
        """The session's next tokens; the refresh token given is used up.

        Raises:
            InvalidTokenError: not a live refresh token. One used before revokes its whole session (it was copied).
        """
        result = await self._refresh.rotate(refresh_token.get_secret_value())
        if result.outcome is Rotation.REUSED:
            log.warning("auth.refresh_token.reused", user_id=result.user_id)
            await self._audit.record("auth.refresh_token.reused", subject_id=result.user_id, address=address)
        if result.outcome is not Rotation.ROTATED or result.user_id is None or result.token is None:
            raise InvalidTokenError("The refresh token is not valid; sign in again.")
        principal = await self._principal_of(result.user_id)
        return TokenPair(
            access_token=self._access.issue(principal.user_id, principal.role),
            expires_in=self._access.ttl_s,
            refresh_token=result.token,
        )

    async def sign_out(self, refresh_token: SecretStr, address: str | None = None) -> None:
        """End the session the refresh token belongs to (nothing happens for one not known)."""
        user_id = await self._refresh.revoke_session(refresh_token.get_secret_value())
        if user_id is not None:
            await self._audit.record("auth.signed_out", actor_id=user_id, address=address)

    async def authenticate(self, access_token: str) -> Principal:
        """The caller an access token stands for, as the account is now (its role, and whether it is disabled).

        Raises:
            InvalidTokenError: the token is not valid, or its account is gone or disabled.
        """
        claims = self._access.verify(access_token)
        return await self._principal_of(claims.user_id)

    async def _principal_of(self, user_id: str) -> Principal:
        """Raises:
        InvalidTokenError: the account is gone or disabled."""
        try:
            user = await self._users.get(user_id)
        except UserNotFoundError as exc:
            raise InvalidTokenError("The token's account no longer exists.") from exc
        if user.is_disabled:
            raise InvalidTokenError("The token's account is disabled.")
        return Principal(user.id, UserRole(user.role), AuthMethod.SESSION)
