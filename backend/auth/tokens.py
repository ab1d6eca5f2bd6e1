"""Access tokens: JWTs (HS256, PyJWT) signed with the newest signing key and verified with any listed one.

Keys rotate without signing anyone out: put the new key first in MCPCHAT_SECRET_KEYS and keep the old one after it
until the longest access token it signed has expired. Each token names its key in the header (`kid`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt

from backend.db.models import UserRole, new_id
from backend.errors import InvalidTokenError

ISSUER = "mcpchat"
AUDIENCE = "mcpchat-api"
ALGORITHM = "HS256"
SECRET_KEY_FILE = "secret_key"  # in MCPCHAT_DATA_DIR, when MCPCHAT_SECRET_KEYS is not set
KEY_BYTES = 32  # RFC 7518 section 3.2: an HS256 key has at least 256 bits
_REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "jti", "iss", "aud"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes

    @classmethod
    def of(cls, secret: bytes) -> SigningKey:
        """A key whose id is derived from it (a hash prefix: it names the key without revealing it)."""
        return cls(kid=hashlib.sha256(secret).hexdigest()[:16], secret=secret)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    role: UserRole
    token_id: str
    expires_at: int  # seconds since the epoch


def load_signing_keys(configured: Sequence[str], key_file: Path) -> list[SigningKey]:
    """The configured keys, newest first; with none, the one in `key_file`, made (mode 0600) when missing."""
    if configured:
        return [SigningKey.of(secret.encode()) for secret in configured]
    try:
        return [SigningKey.of(key_file.read_bytes().strip())]
    except FileNotFoundError:
        pass
    key_file.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(KEY_BYTES).encode()
    # O_EXCL: two processes starting at once do not overwrite each other's key; the loser reads the winner's.
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return [SigningKey.of(key_file.read_bytes().strip())]
    with os.fdopen(descriptor, "wb") as file:
        file.write(secret)
    return [SigningKey.of(secret)]


class AccessTokens:
    def __init__(self, keys: Sequence[SigningKey], ttl_s: int) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._newest, self._by_kid = keys[0], {key.kid: key for key in keys}
        self.ttl_s = ttl_s

    def issue(self, user_id: str, role: UserRole) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "role": role.value,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": new_id(),
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self._newest.secret, algorithm=ALGORITHM, headers={"kid": self._newest.kid})

    def verify(self, token: str) -> AccessClaims:
        """Raises:
        InvalidTokenError: the token is not one of ours, or no longer valid (the message says which)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._by_kid.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidTokenError("The token was signed with a key this server does not hold.")
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": _REQUIRED_CLAIMS},
            )
            return AccessClaims(
                user_id=str(claims["sub"]),
                role=UserRole(claims["role"]),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidTokenError("The access token has expired; refresh it or sign in again.") from exc
        except (jwt.InvalidTokenError, ValueError) as exc:
            raise InvalidTokenError("The access token is not valid.") from exc
