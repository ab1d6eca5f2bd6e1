"""Admins manage accounts: create them, change roles, disable them (ending their sessions and keys at once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.specs import make_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def multi_user_app(tmp_path: Path) -> AsyncIterator[RunningApp]:
    async with run_app(make_settings(tmp_path, auth="multi-user", rate_auth="100/minute"), []) as app:
        yield app


async def _sign_in(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    signed_in = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    tokens: dict[str, str] = signed_in.json()
    return tokens


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def admin(multi_user_app: RunningApp) -> dict[str, str]:
    created = await multi_user_app.http.post(
        "/v1/auth/signup", json={"email": "admin@example.com", "password": PASSWORD}
    )
    assert created.status_code == 201  # the first account: sign-up is closed from here on
    return _bearer(await _sign_in(multi_user_app.http, "admin@example.com"))


async def test_an_admin_creates_accounts_that_sign_in_while_sign_up_stays_closed(
    multi_user_app: RunningApp, admin: dict[str, str]
) -> None:
    http = multi_user_app.http
    closed = await http.post("/v1/auth/signup", json={"email": "eve@example.com", "password": PASSWORD})
    assert (closed.status_code, closed.json()["type"]) == (403, "/problems/sign-up-closed")
    created = await http.post("/v1/users", json={"email": "bob@example.com", "password": PASSWORD}, headers=admin)
    assert (created.status_code, created.json()["role"]) == (201, "member")
    await _sign_in(http, "bob@example.com")
    again = await http.post("/v1/users", json={"email": "BOB@example.com", "password": PASSWORD}, headers=admin)
    assert (again.status_code, again.json()["type"]) == (409, "/problems/email-taken")
    listed = (await http.get("/v1/users", headers=admin)).json()["items"]
    assert [user["email"] for user in listed] == ["admin@example.com", "bob@example.com"]
    assert "password" not in str(listed) and "$argon2" not in str(listed)


async def test_disabling_an_account_ends_its_sessions_and_keys_at_once(
    multi_user_app: RunningApp, admin: dict[str, str]
) -> None:
    http = multi_user_app.http
    bob = (await http.post("/v1/users", json={"email": "bob@example.com", "password": PASSWORD}, headers=admin)).json()
    tokens = await _sign_in(http, "bob@example.com")
    key = (await http.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=_bearer(tokens))).json()
    disabled = await http.patch(f"/v1/users/{bob['id']}", json={"is_disabled": True}, headers=admin)
    assert (disabled.status_code, disabled.json()["is_disabled"]) == (200, True)
    assert (await http.get("/v1/me", headers=_bearer(tokens))).status_code == 401
    assert (await http.get("/v1/tools", headers={"X-API-Key": key["key"]})).status_code == 401
    assert (await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    refused = await http.post("/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
    assert refused.status_code == 401
    await http.patch(f"/v1/users/{bob['id']}", json={"is_disabled": False}, headers=admin)
    assert (await http.get("/v1/tools", headers={"X-API-Key": key["key"]})).status_code == 401  # stays revoked
    await _sign_in(http, "bob@example.com")  # a new session works


async def test_a_role_change_applies_to_the_next_request_of_a_token_already_issued(
    multi_user_app: RunningApp, admin: dict[str, str]
) -> None:
    http = multi_user_app.http
    bob = (await http.post("/v1/users", json={"email": "bob@example.com", "password": PASSWORD}, headers=admin)).json()
    token = _bearer(await _sign_in(http, "bob@example.com"))
    assert (await http.get("/v1/users", headers=token)).status_code == 403
    await http.patch(f"/v1/users/{bob['id']}", json={"role": "admin"}, headers=admin)
    assert (await http.get("/v1/users", headers=token)).status_code == 200


async def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(
    multi_user_app: RunningApp, admin: dict[str, str]
) -> None:
    me = (await multi_user_app.http.get("/v1/me", headers=admin)).json()
    for change in ({"role": "member"}, {"is_disabled": True}):
        refused = await multi_user_app.http.patch(f"/v1/users/{me['id']}", json=change, headers=admin)
        assert (refused.status_code, refused.json()["type"]) == (409, "/problems/last-admin")
    assert (await multi_user_app.http.get("/v1/users", headers=admin)).status_code == 200


async def test_the_audit_log_records_who_did_what_from_where_and_no_secret(
    multi_user_app: RunningApp, admin: dict[str, str]
) -> None:
    http = multi_user_app.http
    bob = (await http.post("/v1/users", json={"email": "bob@example.com", "password": PASSWORD}, headers=admin)).json()
    await http.post("/v1/auth/login", json={"email": "bob@example.com", "password": "wrong password!"})
    tokens = await _sign_in(http, "bob@example.com")
    key = (await http.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=_bearer(tokens))).json()
    await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reused
    await http.patch(f"/v1/users/{bob['id']}", json={"role": "admin"}, headers=admin)
    await http.patch(f"/v1/users/{bob['id']}", json={"is_disabled": True}, headers=admin)
    me = (await http.get("/v1/me", headers=admin)).json()
    page = await http.get("/v1/audit", params={"limit": 100}, headers=admin)
    assert page.status_code == 200, page.text
    events = [(e["event"], e["actor_id"], e["subject_id"]) for e in reversed(page.json()["items"])]
    assert [event for event in events if me["id"] not in (event[1], event[2]) or event[2] == bob["id"]] == [
        ("user.created", me["id"], bob["id"]),
        ("auth.sign_in.failed", None, bob["id"]),
        ("auth.sign_in.succeeded", bob["id"], None),
        ("api_key.created", bob["id"], key["id"]),
        ("auth.refresh_token.reused", None, bob["id"]),
        ("user.role_changed", me["id"], bob["id"]),
        ("user.disabled", me["id"], bob["id"]),
    ]
    failed = next(e for e in page.json()["items"] if e["event"] == "auth.sign_in.failed")
    assert (failed["address"], failed["details"]) == ("127.0.0.1", {"email": "bob@example.com"})
    for secret in (PASSWORD, "wrong password!", tokens["refresh_token"], tokens["access_token"], key["key"]):
        assert secret not in page.text
    assert (await http.get("/v1/audit", headers=_bearer(tokens))).status_code == 401  # disabled by now
