"""Accounts: creating users (their email and password checked) and reading them."""

from __future__ import annotations

from pydantic import EmailStr, SecretStr, TypeAdapter, ValidationError

from backend.auth.passwords import check_password_rules, hash_password
from backend.db.models import User, UserRole
from backend.db.user_store import UserStore
from backend.errors import InvalidArgumentsError

_EMAIL = TypeAdapter(EmailStr)


class InvalidEmailError(InvalidArgumentsError):
    slug, title = "invalid-email", "Invalid email address"


class UserService:
    def __init__(self, store: UserStore) -> None:
        self._store = store

    async def create(self, email: str, password: SecretStr, name: str | None, role: UserRole) -> User:
        """A new account that signs in with `email` and `password`.

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
        return await self._store.create(address.lower(), name, await hash_password(password), role)

    async def get(self, user_id: str) -> User:
        """Raises:
        UserNotFoundError: no account has this id."""
        return await self._store.get(user_id)
