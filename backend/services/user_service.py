"""Accounts: creating users (their email and password checked) and reading them."""

from __future__ import annotations

from pydantic import EmailStr, SecretStr, TypeAdapter, ValidationError

from backend.auth.passwords import check_password_rules, hash_password
from backend.db.api_key_store import ApiKeyStore
from backend.db.models import User, UserRole
from backend.db.refresh_token_store import RefreshTokenStore
from backend.db.user_store import UserStore
from backend.errors import ForbiddenError, InvalidArgumentsError
from backend.services.audit_log import AuditLog

_EMAIL = TypeAdapter(EmailStr)


class InvalidEmailError(InvalidArgumentsError):
    slug, title = "invalid-email", "Invalid email address"


class SignUpClosedError(ForbiddenError):
    slug, title = "sign-up-closed", "Sign-up closed"


class UserService:
    def __init__(
        self, store: UserStore, refresh_tokens: RefreshTokenStore, api_keys: ApiKeyStore, audit: AuditLog
    ) -> None:
        self._store, self._refresh_tokens, self._api_keys, self._audit = store, refresh_tokens, api_keys, audit

    async def create(
        self, email: str, password: SecretStr, name: str | None, role: UserRole, actor_id: str | None = None
    ) -> User:
        """A new account that signs in with `email` and `password`. The first one is the built-in owner account
        (an admin, whatever `role` says), which holds every conversation made before accounts existed.

        Raises:
            InvalidEmailError: not an email address.
            InvalidPasswordError: the password breaks the rules (length).
            EmailTakenError: an account has this email, in any letter case.
        """
        try:
            address = _EMAIL.validate_python(email.strip())
        except ValidationError as exc:
            reason = exc.errors()[0].get("ctx", {}).get("reason", "")
            raise InvalidEmailError(f"{email!r} is not an email address. {reason}".strip()) from exc
        check_password_rules(password)
        # Lower-cased whole: nobody means two accounts by Bob@example.com and bob@example.com.
        address, password_hash = address.lower(), await hash_password(password)
        user = await self._store.claim_owner(address, name, password_hash)
        if user is None:
            user = await self._store.create(address, name, password_hash, role)
        await self._audit.record("user.created", actor_id=actor_id, subject_id=user.id, role=user.role)
        return user

    async def sign_up(self, email: str, password: SecretStr, name: str | None, is_open: bool) -> User:
        """Self-service sign-up: the first account (the owner, an admin), or any member when sign-up is open.

        Raises:
            SignUpClosedError: accounts exist and MCPCHAT_SIGNUP is closed.
            InvalidEmailError, InvalidPasswordError, EmailTakenError: as `create`.
        """
        if not is_open and await self._store.has_accounts():
            raise SignUpClosedError(
                "Sign-up is closed: an admin creates accounts (POST /v1/users, or `mcpchat users create`), "
                "or sets MCPCHAT_SIGNUP=open."
            )
        return await self.create(email, password, name, UserRole.MEMBER)

    async def list(self) -> list[User]:
        return await self._store.list()

    async def update(self, actor_id: str, user_id: str, role: UserRole | None, is_disabled: bool | None) -> User:
        """Change an account's role or disabled flag. Disabling one ends its sessions and revokes its API keys at
        once (its access tokens are refused from the next request: each request reads the account).

        Raises:
            UserNotFoundError: no account has this id.
            LastAdminError: the change would leave no enabled admin.
        """
        user = await self._store.update(user_id, role, is_disabled)
        if is_disabled:
            await self._refresh_tokens.revoke_user(user_id)
            await self._api_keys.revoke_user(user_id)
        if role is not None:
            await self._audit.record("user.role_changed", actor_id=actor_id, subject_id=user_id, role=role.value)
        if is_disabled is not None:
            event = "user.disabled" if is_disabled else "user.enabled"
            await self._audit.record(event, actor_id=actor_id, subject_id=user_id)
        return user

    async def get(self, user_id: str) -> User:
        """Raises:
        UserNotFoundError: no account has this id."""
        return await self._store.get(user_id)
