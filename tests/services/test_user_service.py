"""Accounts: the email and password rules, one account per address, passwords kept only as argon2id hashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from backend.auth.passwords import InvalidPasswordError
from backend.db.api_key_store import ApiKeyStore
from backend.db.audit_store import AuditStore
from backend.db.database import open_database
from backend.db.migrate import upgrade
from backend.db.models import OWNER_ID, UserRole
from backend.db.refresh_token_store import RefreshTokenStore
from backend.db.user_store import EmailTakenError, UserStore
from backend.services.audit_log import AuditLog
from backend.services.user_service import InvalidEmailError, UserService

PASSWORD = SecretStr("correct horse battery staple")


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[UserService]:
    database = open_database(f"sqlite:///{tmp_path / 'users.db'}")
    await upgrade(database)
    try:
        audit = AuditLog(AuditStore(database))
        yield UserService(UserStore(database), RefreshTokenStore(database, 3600), ApiKeyStore(database), audit)
    finally:
        await database.aclose()


async def test_a_new_account_keeps_an_argon2id_hash_of_its_password_and_a_lower_cased_email(
    users: UserService,
) -> None:
    await users.create("first@example.com", PASSWORD, None, UserRole.ADMIN)  # the owner: see below
    created = await users.create("  Ada@Example.COM ", PASSWORD, "Ada", UserRole.MEMBER)
    stored = await users.get(created.id)
    assert (stored.email, stored.name, stored.role, stored.is_disabled) == ("ada@example.com", "Ada", "member", False)
    assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
    assert PASSWORD.get_secret_value() not in stored.password_hash


async def test_the_first_account_claims_the_owner_account_as_an_admin_whatever_role_was_asked(
    users: UserService,
) -> None:
    first = await users.create("ada@example.com", PASSWORD, "Ada", UserRole.MEMBER)
    assert (first.id, first.role, first.email, first.name) == (OWNER_ID, "admin", "ada@example.com", "Ada")
    second = await users.create("bob@example.com", PASSWORD, None, UserRole.MEMBER)
    assert (second.id != OWNER_ID, second.role) == (True, "member")


async def test_an_email_is_refused_when_an_account_has_it_in_any_letter_case(users: UserService) -> None:
    await users.create("ada@example.com", PASSWORD, None, UserRole.ADMIN)
    with pytest.raises(EmailTakenError, match="exists already"):
        await users.create("ADA@example.com", PASSWORD, None, UserRole.MEMBER)


@pytest.mark.parametrize(
    ("password", "message"),
    [("x" * 11, "at least 12 characters; this one has 11"), ("x" * 1025, "at most 1024 characters; this one has 1025")],
)
async def test_a_password_outside_the_length_rules_is_refused_without_being_echoed(
    users: UserService, password: str, message: str
) -> None:
    with pytest.raises(InvalidPasswordError, match=message) as refused:
        await users.create("ada@example.com", SecretStr(password), None, UserRole.MEMBER)
    assert password not in refused.value.detail
    assert refused.value.slug == "invalid-password" and refused.value.status == 422


@pytest.mark.parametrize("email", ["ada", "ada@", "ada@localhost", "a da@example.com"])
async def test_something_that_is_not_an_email_address_is_refused(users: UserService, email: str) -> None:
    with pytest.raises(InvalidEmailError, match="is not an email address"):
        await users.create(email, PASSWORD, None, UserRole.MEMBER)
