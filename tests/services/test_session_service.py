"""Sign-in sessions on a real database: one answer for every failed sign-in, refresh tokens that rotate and
revoke their session when reused, sign-out, and tokens that stop working the moment an account is disabled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from backend.auth.principal import AuthMethod
from backend.auth.tokens import AccessTokens, SigningKey
from backend.db.api_key_store import ApiKeyStore
from backend.db.audit_store import AuditStore
from backend.db.database import Database, open_database
from backend.db.migrate import upgrade
from backend.db.models import OWNER_ID, User, UserRole
from backend.db.refresh_token_store import RefreshTokenStore
from backend.db.user_store import UserStore
from backend.errors import InvalidCredentialsError, InvalidTokenError
from backend.services.audit_log import AuditLog
from backend.services.session_service import SessionService
from backend.services.user_service import SignUpClosedError, UserService

PASSWORD = SecretStr("correct horse battery staple")


@dataclass
class Accounts:
    database: Database
    users: UserService
    sessions: SessionService


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[Accounts]:
    database = open_database(f"sqlite:///{tmp_path / 'accounts.db'}")
    await upgrade(database)
    store = UserStore(database)
    tokens = AccessTokens([SigningKey.of(b"k" * 32)], ttl_s=900)
    try:
        refresh_tokens = RefreshTokenStore(database, 3600)
        audit = AuditLog(AuditStore(database))
        users = UserService(store, refresh_tokens, ApiKeyStore(database), audit)
        yield Accounts(database, users, SessionService(store, refresh_tokens, tokens, audit))
    finally:
        await database.aclose()


async def test_the_first_account_is_the_owner_admin_and_sign_up_then_closes_unless_open(accounts: Accounts) -> None:
    first = await accounts.users.sign_up("ada@example.com", PASSWORD, "Ada", is_open=False)
    assert (first.id, first.role, first.email) == (OWNER_ID, "admin", "ada@example.com")
    with pytest.raises(SignUpClosedError):
        await accounts.users.sign_up("bob@example.com", PASSWORD, None, is_open=False)
    second = await accounts.users.sign_up("bob@example.com", PASSWORD, None, is_open=True)
    assert (second.role, second.id != OWNER_ID) == ("member", True)


async def test_a_signed_in_users_access_token_stands_for_them(accounts: Accounts) -> None:
    user = await accounts.users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    pair = await accounts.sessions.sign_in("  ADA@example.com", PASSWORD)
    principal = await accounts.sessions.authenticate(pair.access_token)
    assert (principal.user_id, principal.role, principal.method) == (user.id, UserRole.ADMIN, AuthMethod.SESSION)
    assert pair.expires_in == 900
    assert (await accounts.users.get(user.id)).last_login_at is not None


async def test_a_wrong_password_an_unknown_email_and_a_disabled_account_get_one_answer(accounts: Accounts) -> None:
    await accounts.users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    disabled = await accounts.users.create("eve@example.com", PASSWORD, None, UserRole.MEMBER)
    await _disable(accounts.database, disabled.id)
    details = set()
    for email, password in [
        ("ada@example.com", SecretStr("wrong password here")),
        ("nobody@example.com", PASSWORD),
        ("eve@example.com", PASSWORD),
    ]:
        with pytest.raises(InvalidCredentialsError) as refused:
            await accounts.sessions.sign_in(email, password)
        details.add(refused.value.detail)
    assert details == {"The email or password is wrong."}


async def test_a_refresh_token_works_once_and_using_it_again_ends_the_whole_session(accounts: Accounts) -> None:
    await accounts.users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    first = await accounts.sessions.sign_in("ada@example.com", PASSWORD)
    other_session = await accounts.sessions.sign_in("ada@example.com", PASSWORD)
    second = await accounts.sessions.refresh(SecretStr(first.refresh_token))
    assert second.refresh_token != first.refresh_token
    assert (await accounts.sessions.authenticate(second.access_token)).user_id == OWNER_ID
    with pytest.raises(InvalidTokenError):
        await accounts.sessions.refresh(SecretStr(first.refresh_token))  # replayed: a copy exists somewhere
    with pytest.raises(InvalidTokenError):
        await accounts.sessions.refresh(SecretStr(second.refresh_token))  # so its successor is revoked too
    assert (await accounts.sessions.refresh(SecretStr(other_session.refresh_token))).refresh_token


async def test_signing_out_ends_the_session_and_an_unknown_refresh_token_is_refused(accounts: Accounts) -> None:
    await accounts.users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    pair = await accounts.sessions.sign_in("ada@example.com", PASSWORD)
    await accounts.sessions.sign_out(SecretStr(pair.refresh_token))
    for token in (pair.refresh_token, "never-issued"):
        with pytest.raises(InvalidTokenError):
            await accounts.sessions.refresh(SecretStr(token))


async def test_a_disabled_accounts_access_token_stops_working_at_once(accounts: Accounts) -> None:
    await accounts.users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    member = await accounts.users.create("bob@example.com", PASSWORD, None, UserRole.MEMBER)
    pair = await accounts.sessions.sign_in("bob@example.com", PASSWORD)
    assert (await accounts.sessions.authenticate(pair.access_token)).user_id == member.id
    await _disable(accounts.database, member.id)
    with pytest.raises(InvalidTokenError, match="disabled"):
        await accounts.sessions.authenticate(pair.access_token)
    with pytest.raises(InvalidTokenError):
        await accounts.sessions.refresh(SecretStr(pair.refresh_token))


async def _disable(database: Database, user_id: str) -> None:
    await database.write(
        lambda connection: connection.execute(update(User).where(User.id == user_id).values(is_disabled=True))
    )
