"""Sign-in sessions over HTTP in multi-user mode: rate-limited attempts, refresh rotation and reuse detection,
sign-out, disabled accounts, and no secret in any log line or answer."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.logging import configure_logging
from tests.support.app_runner import RunningApp, run_app
from tests.support.specs import make_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def multi_user_app(tmp_path: Path) -> AsyncIterator[RunningApp]:
    async with run_app(make_settings(tmp_path, auth="multi-user", signup="open", rate_auth="100/minute"), []) as app:
        yield app


async def _sign_up(app: RunningApp, email: str) -> None:
    created = await app.http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text


async def test_sign_in_attempts_over_the_rate_get_429_with_retry_after_even_with_the_right_password(
    tmp_path: Path,
) -> None:
    async with run_app(make_settings(tmp_path, auth="multi-user", rate_auth="4/minute"), []) as app:
        await _sign_up(app, "ada@example.com")  # one attempt for the address and the account already
        for _ in range(3):
            wrong = await app.http.post(
                "/v1/auth/login", json={"email": "ada@example.com", "password": "not it at all"}
            )
            assert wrong.status_code == 401
            assert wrong.json()["type"] == "/problems/invalid-credentials"
        limited = await app.http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert limited.status_code == 429
    assert limited.json()["type"] == "/problems/rate-limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-policy"] == '"auth-address";q=4;w=60'
    assert "access_token" not in limited.text


async def test_a_refresh_token_rotates_and_a_replayed_one_ends_the_session(multi_user_app: RunningApp) -> None:
    http = multi_user_app.http
    await _sign_up(multi_user_app, "ada@example.com")
    first = (await http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})).json()
    assert (first["token_type"], first["expires_in"]) == ("bearer", 900)
    second = (await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    me = await http.get("/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert (me.json()["email"], me.json()["auth_method"]) == ("ada@example.com", "session")
    replayed = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replayed.status_code == 401
    assert replayed.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    after_theft = await http.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after_theft.status_code == 401  # the thief's copy and the user's own both stop working


async def test_signing_out_ends_the_session(multi_user_app: RunningApp) -> None:
    http = multi_user_app.http
    await _sign_up(multi_user_app, "ada@example.com")
    pair = (await http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})).json()
    assert (await http.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})).status_code == 204
    assert (await http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 401


async def test_the_oauth2_form_signs_in_as_the_docs_authorize_button_does(multi_user_app: RunningApp) -> None:
    await _sign_up(multi_user_app, "ada@example.com")
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    signed_in = await multi_user_app.http.post("/v1/auth/token", data=form)
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    assert (await multi_user_app.http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_a_disabled_accounts_token_is_refused_on_its_next_request(
    multi_user_app: RunningApp, tmp_path: Path
) -> None:
    await _sign_up(multi_user_app, "admin@example.com")
    await _sign_up(multi_user_app, "bob@example.com")
    pair = (
        await multi_user_app.http.post("/v1/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await multi_user_app.http.get("/v1/conversations", headers=headers)).status_code == 200
    with sqlite3.connect(tmp_path / "mcpchat.db") as connection:  # as an admin's PATCH /v1/users/{id} will
        connection.execute("UPDATE users SET is_disabled = 1 WHERE email = 'bob@example.com'")
    refused = await multi_user_app.http.get("/v1/conversations", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["type"] == "/problems/invalid-token"


async def test_sign_in_routes_answer_404_in_single_user_mode_where_nobody_signs_in(app: RunningApp) -> None:
    refused = await app.http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert refused.status_code == 404
    assert refused.json()["type"] == "/problems/sign-in-disabled"
    assert "single-user mode" in refused.json()["detail"]


async def test_no_password_or_token_reaches_a_log_line_or_a_problem(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="debug", is_json=True)
    settings = make_settings(tmp_path, auth="multi-user", signup="open", rate_auth="100/minute")
    answers: list[str] = []
    async with run_app(settings, []) as app:
        http = app.http
        await _sign_up(app, "ada@example.com")
        pair = (await http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})).json()
        answers.append(
            (await http.post("/v1/auth/login", json={"email": "ada@example.com", "password": "x" * 12})).text
        )
        answers.append(
            (await http.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})).text
        )
        answers.append((await http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).text)
        answers.append((await http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})).text)
        answers.append((await http.post("/v1/auth/signup", json={"email": "bob", "password": "short"})).text)
        bearer = {"Authorization": f"Bearer {pair['access_token']}x"}
        answers.append((await http.get("/v1/me", headers=bearer)).text)
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert "auth.sign_in.failed" in logs and "auth.refresh_token.reused" in logs  # the events were logged
    for secret in (PASSWORD, "x" * 12, "short", pair["refresh_token"], pair["access_token"]):
        assert secret not in logs
        for answer in answers:
            assert secret not in answer


@pytest.mark.parametrize(("trusted", "policy"), [(["127.0.0.1"], "auth-account"), ([], "auth-address")])
async def test_x_forwarded_for_counts_only_from_a_trusted_proxy_and_the_account_is_limited_across_addresses(
    tmp_path: Path, trusted: list[str], policy: str
) -> None:
    settings = make_settings(tmp_path, auth="multi-user", rate_auth="3/minute", trusted_proxies=trusted)
    async with run_app(settings, []) as app:
        statuses = []
        for number in range(4):  # each from another address, as the proxy says
            wrong = {"email": "ada@example.com", "password": "not it at all"}
            response = await app.http.post(
                "/v1/auth/login", json=wrong, headers={"X-Forwarded-For": f"10.0.0.{number}"}
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    assert response.headers["ratelimit-policy"] == f'"{policy}";q=3;w=60'
