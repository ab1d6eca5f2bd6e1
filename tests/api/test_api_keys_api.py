"""API keys over HTTP in multi-user mode: shown once, stored hashed, scoped, revoked at once in every process."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.specs import make_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def multi_user_app(tmp_path: Path) -> AsyncIterator[RunningApp]:
    async with run_app(make_settings(tmp_path, auth="multi-user", signup="open", rate_auth="100/minute"), []) as app:
        yield app


async def _session(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    await http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    signed_in = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {signed_in.json()['access_token']}"}


async def test_a_key_is_shown_once_listed_without_its_secret_and_works_in_either_header(
    multi_user_app: RunningApp, tmp_path: Path
) -> None:
    http = multi_user_app.http
    session = await _session(http, "ada@example.com")
    created = await http.post("/v1/api-keys", json={"name": "laptop", "scopes": ["read", "chat"]}, headers=session)
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key["key"]
    assert secret.startswith("mcpc_") and len(secret) >= len("mcpc_") + 43  # 32 random bytes, base64url
    assert secret.startswith(key["prefix"]) and len(key["prefix"]) < 16
    assert key["scopes"] == ["chat", "read"]
    listed = (await http.get("/v1/api-keys", headers=session)).json()["items"]
    assert [item["id"] for item in listed] == [key["id"]]
    assert secret not in str(listed) and "key" not in listed[0]
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        me = await http.get("/v1/me", headers=headers)
        assert (me.status_code, me.json()["auth_method"]) == (200, "api-key")
    with sqlite3.connect(tmp_path / "mcpchat.db") as connection:
        stored = connection.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
    assert len(stored) == 1 and secret not in str(stored)  # only a hash is kept
    listed_again = (await http.get("/v1/api-keys", headers=session)).json()["items"]
    assert listed_again[0]["last_used_at"] is not None


async def test_a_revoked_key_is_refused_on_the_next_request_by_every_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth="multi-user", signup="open", secret_keys=["s" * 32])
    async with run_app(settings, []) as first, run_app(settings, []) as second:  # two replicas, one database
        session = await _session(first.http, "ada@example.com")
        key = (await first.http.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=session)).json()
        headers = {"X-API-Key": key["key"]}
        assert (await second.http.get("/v1/tools", headers=headers)).status_code == 200
        assert (await first.http.delete(f"/v1/api-keys/{key['id']}", headers=session)).status_code == 204
        refused = await second.http.get("/v1/tools", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "The API key is not valid: unknown, revoked or expired."
        assert (await first.http.get("/v1/api-keys", headers=session)).json()["items"] == []


async def test_a_member_cannot_make_an_admin_key_and_an_expiry_must_be_to_come(multi_user_app: RunningApp) -> None:
    http = multi_user_app.http
    await _session(http, "admin@example.com")  # the first account: the admin
    member = await _session(http, "bob@example.com")
    admin_key = await http.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=member)
    assert admin_key.status_code == 403
    assert admin_key.json()["detail"] == "Only an admin may make a key with the admin scope."
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = await http.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["read"], "expires_at": past}, headers=member
    )
    assert expired.status_code == 422
    unknown_scope = await http.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=member)
    assert unknown_scope.status_code == 422


async def test_an_expired_key_and_a_disabled_accounts_key_are_refused(
    multi_user_app: RunningApp, tmp_path: Path
) -> None:
    http = multi_user_app.http
    await _session(http, "admin@example.com")
    member = await _session(http, "bob@example.com")
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = (
        await http.post("/v1/api-keys", json={"name": "x", "scopes": ["read"], "expires_at": soon}, headers=member)
    ).json()
    headers = {"X-API-Key": key["key"]}
    assert (await http.get("/v1/tools", headers=headers)).status_code == 200
    with sqlite3.connect(tmp_path / "mcpchat.db") as connection:  # the hour has passed
        connection.execute("UPDATE api_keys SET expires_at = '2020-01-01 00:00:00.000000'")
    assert (await http.get("/v1/tools", headers=headers)).status_code == 401
    fresh = (await http.post("/v1/api-keys", json={"name": "y", "scopes": ["read"]}, headers=member)).json()
    with sqlite3.connect(tmp_path / "mcpchat.db") as connection:
        connection.execute("UPDATE users SET is_disabled = 1 WHERE email = 'bob@example.com'")
    refused = await http.get("/v1/tools", headers={"X-API-Key": fresh["key"]})
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The API key's account is disabled."
