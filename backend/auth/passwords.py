"""Passwords: the rules they must meet, and their argon2id hashes (pwdlib)."""

from __future__ import annotations

from functools import cache

import anyio
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import SecretStr

from backend.errors import InvalidArgumentsError

PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024  # argon2 takes any length; this bounds what one request can make the server hash

_HASHER = PasswordHash((Argon2Hasher(),))


@cache
def _dummy_hash() -> str:
    """Verified against when there is no account (or it has no password), so a failed sign-in takes as long
    whether or not the email exists. Made on first use: a tenth of a second that start-up need not pay."""
    return _HASHER.hash("no account has this password")


class InvalidPasswordError(InvalidArgumentsError):
    slug, title = "invalid-password", "Password not accepted"


def check_password_rules(password: SecretStr) -> None:
    """Raises:
    InvalidPasswordError: too short or too long (the message says which, never the password)."""
    length = len(password.get_secret_value())
    if length < PASSWORD_MIN_CHARS:
        raise InvalidPasswordError(f"A password needs at least {PASSWORD_MIN_CHARS} characters; this one has {length}.")
    if length > PASSWORD_MAX_CHARS:
        raise InvalidPasswordError(
            f"A password may have at most {PASSWORD_MAX_CHARS} characters; this one has {length}."
        )


async def hash_password(password: SecretStr) -> str:
    """The password's argon2id hash (a PHC string), computed on a worker thread: it takes a tenth of a second."""
    return await anyio.to_thread.run_sync(_HASHER.hash, password.get_secret_value())


async def verify_password(password: SecretStr, password_hash: str | None) -> bool:
    """Whether `password` matches `password_hash`; None (no such account) takes as long and is False."""
    secret = password.get_secret_value()
    if len(secret) > PASSWORD_MAX_CHARS:  # never hash what no account can have
        return False
    if password_hash is None:
        await anyio.to_thread.run_sync(_HASHER.verify, secret, _dummy_hash())
        return False
    return await anyio.to_thread.run_sync(_HASHER.verify, secret, password_hash)
