"""Accounts through the API, in single-user mode: every request is the built-in owner's."""

from __future__ import annotations

from tests.support.app_runner import RunningApp


async def test_me_is_the_owner_account_with_the_admin_role_in_single_user_mode(app: RunningApp) -> None:
    response = await app.http.get("/v1/me")
    assert response.status_code == 200
    me = response.json()
    assert me["id"] == "00000000-0000-7000-8000-000000000000"
    assert (me["email"], me["role"], me["auth_method"]) == ("owner@localhost", "admin", "single-user")
