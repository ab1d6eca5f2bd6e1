"""Access tokens: signed with the newest key, verified with any listed one, refused when tampered or expired."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from backend.auth.tokens import ALGORITHM, AccessTokens, SigningKey, load_signing_keys
from backend.db.models import UserRole
from backend.errors import InvalidTokenError

OLD, NEW = SigningKey.of(b"o" * 32), SigningKey.of(b"n" * 32)


def test_a_token_carries_the_user_and_role_and_names_the_key_that_signed_it() -> None:
    tokens = AccessTokens([NEW, OLD], ttl_s=900)
    token = tokens.issue("user-1", UserRole.MEMBER)
    claims = tokens.verify(token)
    assert (claims.user_id, claims.role) == ("user-1", UserRole.MEMBER)
    assert abs(claims.expires_at - (time.time() + 900)) < 60
    assert jwt.get_unverified_header(token)["kid"] == NEW.kid
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"sub", "role", "iat", "exp", "jti", "iss", "aud"}


def test_after_a_key_rotation_old_tokens_verify_until_they_expire_and_new_ones_use_the_new_key() -> None:
    before = AccessTokens([OLD], ttl_s=900).issue("user-1", UserRole.ADMIN)
    rotated = AccessTokens([NEW, OLD], ttl_s=900)
    assert rotated.verify(before).user_id == "user-1"
    assert jwt.get_unverified_header(rotated.issue("user-1", UserRole.ADMIN))["kid"] == NEW.kid
    with pytest.raises(InvalidTokenError, match="key this server does not hold"):
        AccessTokens([NEW], ttl_s=900).verify(before)  # the old key dropped from the list


def _with_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: _with_payload(token, role="admin"),  # tampered: the signature no longer matches
        lambda token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        lambda token: jwt.encode({"sub": "user-1"}, NEW.secret, algorithm=ALGORITHM, headers={"kid": NEW.kid}),
        lambda token: jwt.encode(
            {"sub": "u", "role": "admin", "iat": 0, "exp": 2**40, "jti": "j", "iss": "x", "aud": "mcpchat-api"},
            NEW.secret,
            algorithm=ALGORITHM,
            headers={"kid": NEW.kid},
        ),  # another issuer
        lambda token: "not a token",
        lambda token: jwt.encode({"sub": "u"}, "", algorithm="none", headers={"kid": NEW.kid}),
    ],
)
def test_a_tampered_foreign_or_malformed_token_is_refused(forge: Callable[[str], str]) -> None:
    tokens = AccessTokens([NEW], ttl_s=900)
    token = tokens.issue("user-1", UserRole.MEMBER)
    with pytest.raises(InvalidTokenError):
        tokens.verify(forge(token))


def test_an_expired_token_is_refused_with_a_hint_to_refresh() -> None:
    expired = AccessTokens([NEW], ttl_s=-120).issue("user-1", UserRole.MEMBER)
    with pytest.raises(InvalidTokenError, match="expired"):
        AccessTokens([NEW], ttl_s=900).verify(expired)


def test_without_configured_keys_one_is_made_in_a_private_file_and_kept_across_restarts(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret_key"
    first = load_signing_keys([], key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first[0].secret) >= 32
    assert load_signing_keys([], key_file) == first
    configured = load_signing_keys(["n" * 32, "o" * 32], key_file)
    assert configured == [NEW, OLD]
