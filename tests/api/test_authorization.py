"""Multi-user mode, route by route: the authorization matrix is driven by the app's own route table, so a route
added without protection (or without a row here) fails this suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from backend.app import create_app
from tests.conftest import both_servers
from tests.support.accounts import sign_up_and_in
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

    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    is_owned: bool = False
    is_admin_only: bool = False


CONVERSATION = "/v1/conversations/{conversation_id}"
PROTECTED: dict[tuple[str, str], Case] = {
    ("POST", "/v1/conversations"): Case(json={"title": "new"}),
    ("GET", "/v1/conversations"): Case(),
    ("GET", CONVERSATION): Case(is_owned=True),
    ("PATCH", CONVERSATION): Case(json={"title": "renamed"}, is_owned=True),
    ("DELETE", CONVERSATION): Case(is_owned=True),
    ("GET", CONVERSATION + "/messages"): Case(is_owned=True),
    ("POST", CONVERSATION + "/messages"): Case(json={"content": "hello"}, is_owned=True),
    ("POST", CONVERSATION + "/cancel"): Case(is_owned=True),
    ("POST", "/api/chat"): Case(json={"message": "hello"}),
    ("GET", "/api/history"): Case(),
    ("POST", "/api/clear"): Case(),
    ("GET", "/v1/tools"): Case(),
    ("GET", "/v1/tools/{name}"): Case(),
    ("POST", "/v1/tools/{name}/call"): Case(json={"arguments": {"a": 1, "b": 2}}),
    ("GET", "/api/tools"): Case(),
    ("GET", "/v1/servers"): Case(),
    ("GET", "/v1/servers/{name}"): Case(),
    ("POST", "/v1/servers/{name}/reconnect"): Case(is_admin_only=True),
    ("GET", "/api/servers"): Case(),
    ("GET", "/v1/prompts"): Case(),
    ("POST", "/v1/prompts/{name}/get"): Case(json={"arguments": {"name": "Ada"}}),
    ("GET", "/v1/resources"): Case(),
    ("GET", "/v1/resources/templates"): Case(),
    ("GET", "/v1/resources/read"): Case(params={"uri": "test://greeting"}),
    ("GET", "/v1/me"): Case(),
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
    if "{conversation_id}" in path:  # a fresh conversation of the owner's for each call: a DELETE may remove it
        created = await team.app.http.post("/v1/conversations", json={}, headers=_bearer(team.owner))
        path = path.replace("{conversation_id}", created.json()["id"])
    for template, name in NAMES.items():
        path = path.replace(template, template.replace("{name}", name))
    return await team.app.http.request(
        method, path, json=case.json, params=case.params, headers=_bearer(token) if token else {}
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
        assert stranger.json()["type"] == "/problems/conversation-not-found"
        assert owner.status_code < 300, owner.text
    elif case.is_admin_only:
        assert (stranger.status_code, owner.status_code) == (403, 403)
        assert owner.json()["type"] == "/problems/forbidden"
        assert admin.status_code < 300, admin.text
    else:
        for response in (stranger, owner, admin):
            assert response.status_code < 300, response.text


async def test_docs_health_and_the_openapi_document_need_no_credential(team: Team) -> None:
    for path in ("/docs", "/openapi.json", "/healthz"):
        assert (await team.app.http.get(path)).status_code == 200
    schema = (await team.app.http.get("/openapi.json")).json()
    assert "OAuth2PasswordBearer" in schema["components"]["securitySchemes"]
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
