"""Multi-user mode, route by route: the authorization matrix is driven by the app's own route table, so a route
added without protection (or without a row here) fails this suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from backend.app import create_app
from backend.auth.principal import Scope
from tests.conftest import both_servers
from tests.support.accounts import PASSWORD, sign_up_and_in
from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.specs import chat_settings, make_settings

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/auth/signup"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
}


@dataclass(frozen=True)
class Case:
    """How to call one route, and whether it acts on a conversation (then only its owner may) or needs an admin."""

    scope: Scope | None  # what an API key needs for it (None: any key)
    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    is_owned: bool = False
    is_admin_only: bool = False
    is_session_only: bool = False  # no API key may (a key cannot make keys)


CONVERSATION = "/v1/conversations/{conversation_id}"
CHAT, READ, TOOLS, ADMIN = Scope.CHAT, Scope.READ, Scope.TOOLS, Scope.ADMIN
PROTECTED: dict[tuple[str, str], Case] = {
    ("POST", "/v1/conversations"): Case(CHAT, json={"title": "new"}),
    ("GET", "/v1/conversations"): Case(CHAT),
    ("GET", CONVERSATION): Case(CHAT, is_owned=True),
    ("PATCH", CONVERSATION): Case(CHAT, json={"title": "renamed"}, is_owned=True),
    ("DELETE", CONVERSATION): Case(CHAT, is_owned=True),
    ("GET", CONVERSATION + "/messages"): Case(CHAT, is_owned=True),
    ("POST", CONVERSATION + "/messages"): Case(CHAT, json={"content": "hello"}, is_owned=True),
    ("POST", CONVERSATION + "/cancel"): Case(CHAT, is_owned=True),
    ("POST", "/api/chat"): Case(CHAT, json={"message": "hello"}),
    ("GET", "/api/history"): Case(CHAT),
    ("POST", "/api/clear"): Case(CHAT),
    ("GET", "/v1/tools"): Case(READ),
    ("GET", "/v1/tools/{name}"): Case(READ),
    ("POST", "/v1/tools/{name}/call"): Case(TOOLS, json={"arguments": {"a": 1, "b": 2}}),
    ("GET", "/api/tools"): Case(READ),
    ("GET", "/v1/servers"): Case(READ),
    ("GET", "/v1/servers/{name}"): Case(READ),
    ("POST", "/v1/servers/{name}/reconnect"): Case(ADMIN, is_admin_only=True),
    ("GET", "/api/servers"): Case(READ),
    ("GET", "/v1/prompts"): Case(READ),
    ("POST", "/v1/prompts/{name}/get"): Case(TOOLS, json={"arguments": {"name": "Ada"}}),
    ("GET", "/v1/resources"): Case(READ),
    ("GET", "/v1/resources/templates"): Case(READ),
    ("GET", "/v1/resources/read"): Case(TOOLS, params={"uri": "test://greeting"}),
    ("GET", "/v1/me"): Case(None),
    ("POST", "/v1/api-keys"): Case(None, json={"name": "ci", "scopes": ["read"]}, is_session_only=True),
    ("GET", "/v1/api-keys"): Case(None),
    ("DELETE", "/v1/api-keys/{key_id}"): Case(None, is_owned=True),
    ("GET", "/v1/users"): Case(ADMIN, is_admin_only=True),
    ("POST", "/v1/users"): Case(ADMIN, json={"password": "correct horse battery staple"}, is_admin_only=True),
    ("PATCH", "/v1/users/{user_id}"): Case(ADMIN, json={"role": "member"}, is_admin_only=True),
    ("GET", "/v1/audit"): Case(ADMIN, is_admin_only=True),
}
NAMES = {"/v1/tools/{name}": "calculator__add", "/v1/servers/{name}": "calculator", "/v1/prompts/{name}": "test__greet"}


@dataclass
class Team:
    app: RunningApp
    admin: str  # access tokens
    owner: str  # a member, whose conversations the matrix acts on
    stranger: str  # another member


@pytest.fixture
async def team(tmp_path: Path, marker_dir: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Team]:
    fake_llm.responder = lambda _request: Reply.say("fine")
    settings = chat_settings(tmp_path, fake_llm, auth="multi-user", signup="open", rate_auth="1000/minute")
    async with run_app(settings, both_servers(marker_dir)) as app:
        await app.wait_ready("calculator", "test")
        tokens = [await sign_up_and_in(app.http, f"{who}@example.com") for who in ("admin", "owner", "stranger")]
        yield Team(app, *tokens)


async def _signed_up(team: Team, email: str) -> dict[str, Any]:
    created = await team.app.http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    user: dict[str, Any] = created.json()
    return user


def test_the_matrix_has_a_row_for_every_route_of_the_app_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, auth="multi-user"), [])
    routes = {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute)
        for method in context.methods or ()
    }
    assert routes == PROTECTED.keys() | PUBLIC


async def _call(team: Team, method: str, path: str, case: Case, token: str | None) -> httpx.Response:
    # A fresh conversation or key of the owner's for each call: a DELETE may remove it.
    if "{conversation_id}" in path:
        created = await team.app.http.post("/v1/conversations", json={}, headers=_bearer(team.owner))
        path = path.replace("{conversation_id}", created.json()["id"])
    if "{user_id}" in path:  # a fresh member to change
        path = path.replace("{user_id}", (await _signed_up(team, f"{uuid.uuid4().hex}@example.com"))["id"])
    if case.json is not None and "password" in case.json:  # a new account: a new email each time
        case = Case(case.scope, json={**case.json, "email": f"{uuid.uuid4().hex}@example.com"})
    if "{key_id}" in path:
        key = await _api_key(team, team.owner, [READ])
        path = path.replace("{key_id}", key["id"])
    for template, name in NAMES.items():
        path = path.replace(template, template.replace("{name}", name))
    return await team.app.http.request(
        method, path, json=case.json, params=case.params, headers=_bearer(token) if token else {}
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _api_key(team: Team, token: str, scopes: list[Scope]) -> dict[str, Any]:
    created = await team.app.http.post(
        "/v1/api-keys", json={"name": "matrix", "scopes": [scope.value for scope in scopes]}, headers=_bearer(token)
    )
    assert created.status_code == 201, created.text
    key: dict[str, Any] = created.json()
    return key


@pytest.mark.parametrize(("method", "path"), sorted(PROTECTED))
async def test_each_protected_route_answers_each_caller_as_the_matrix_says(team: Team, method: str, path: str) -> None:
    case = PROTECTED[(method, path)]
    anonymous = await _call(team, method, path, case, None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["type"] == "/problems/not-authenticated"
    if path.startswith("/api/"):
        assert "error" in anonymous.json()  # the legacy clients read `error`

    forged = await _call(team, method, path, case, team.owner[:-2] + "xx")
    assert forged.status_code == 401, forged.text
    assert forged.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    stranger = await _call(team, method, path, case, team.stranger)
    owner = await _call(team, method, path, case, team.owner)
    admin = await _call(team, method, path, case, team.admin)
    if case.is_owned:  # nobody else's, an admin's included: not even whether it exists
        assert (stranger.status_code, admin.status_code) == (404, 404), (stranger.text, admin.text)
        assert stranger.json()["type"] in ("/problems/conversation-not-found", "/problems/api-key-not-found")
        assert owner.status_code < 300, owner.text
    elif case.is_admin_only:
        assert (stranger.status_code, owner.status_code) == (403, 403)
        assert owner.json()["type"] == "/problems/forbidden"
        assert admin.status_code < 300, admin.text
    else:
        for response in (stranger, owner, admin):
            assert response.status_code < 300, response.text

    # An API key of the caller the route is for: refused without the route's scope, let through with it alone.
    holder = team.admin if case.is_admin_only else team.owner
    if case.scope is not None:
        lacking = await _api_key(
            team,
            holder,
            [scope for scope in Scope if scope is not case.scope and (scope is not ADMIN or case.is_admin_only)],
        )
        refused = await _call(team, method, path, case, lacking["key"])
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == f"This API key lacks the {case.scope.value} scope."
    only = await _api_key(team, holder, [case.scope] if case.scope is not None else [READ])
    with_key = await _call(team, method, path, case, only["key"])
    assert (with_key.status_code == 403) if case.is_session_only else (with_key.status_code < 300), with_key.text


async def test_docs_health_and_the_openapi_document_need_no_credential(team: Team) -> None:
    for path in ("/docs", "/openapi.json", "/healthz"):
        assert (await team.app.http.get(path)).status_code == 200
    schema = (await team.app.http.get("/openapi.json")).json()
    assert set(schema["components"]["securitySchemes"]) == {"AccessToken", "ApiKey"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            is_public = (method.upper(), path) in PUBLIC
            assert ("security" in operation) is not is_public, (method, path)


async def test_each_member_sees_only_their_own_conversations_in_lists_and_legacy_history(team: Team) -> None:
    http = team.app.http
    mine = (await http.post("/v1/conversations", json={"title": "mine"}, headers=_bearer(team.owner))).json()
    await http.post("/api/chat", json={"message": "owner's secret"}, headers=_bearer(team.owner))
    theirs = (await http.get("/v1/conversations", headers=_bearer(team.stranger))).json()["items"]
    assert mine["id"] not in {conversation["id"] for conversation in theirs}
    history = (await http.get("/api/history", headers=_bearer(team.stranger))).json()["history"]
    assert "owner's secret" not in str(history)
    own_history = (await http.get("/api/history", headers=_bearer(team.owner))).json()["history"]
    assert own_history[0] == {"role": "user", "content": "owner's secret"}
