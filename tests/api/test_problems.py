"""Every error is RFC 9457 problem+json with a request id; bad input never gets a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.app_runner import RunningApp, run_app
from tests.support.problems import assert_problem
from tests.support.specs import calculator_spec, make_settings


@pytest.fixture
async def small_app(tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = make_settings(tmp_path, max_body_bytes=2048)
    async with run_app(settings, [calculator_spec()]) as running:
        await running.wait_ready("calculator")
        yield running


BAD_REQUESTS = [
    ("GET", "/nowhere", None, None, 404, "/problems/not-found"),
    ("DELETE", "/v1/tools", None, None, 405, "/problems/method-not-allowed"),
    ("GET", "/v1/servers/ghost", None, None, 404, "/problems/mcp-server-not-found"),
    ("POST", "/v1/servers/ghost/reconnect", None, None, 404, "/problems/mcp-server-not-found"),
    ("GET", "/v1/servers?limit=0", None, None, 422, "/problems/validation-error"),
    ("GET", "/v1/tools?limit=abc", None, None, 422, "/problems/validation-error"),
    ("GET", "/v1/tools?cursor=%25%25%25", None, None, 400, "/problems/bad-request"),
    ("GET", "/v1/tools/ghost__tool", None, None, 404, "/problems/tool-not-found"),
    ("POST", "/v1/tools/ghost__tool/call", b'{"arguments": {}}', "application/json", 404, "/problems/tool-not-found"),
    ("POST", "/v1/tools/calculator__add/call", b"{not json", "application/json", 422, "/problems/validation-error"),
    ("POST", "/v1/tools/calculator__add/call", b"[1, 2]", "application/json", 422, "/problems/validation-error"),
    (
        "POST",
        "/v1/tools/calculator__add/call",
        b'{"arguments": 5}',
        "application/json",
        422,
        "/problems/validation-error",
    ),
    ("POST", "/v1/tools/calculator__add/call", b'{"args": {}}', "application/json", 422, "/problems/validation-error"),
    (
        "POST",
        "/v1/tools/calculator__add/call",
        b'{"arguments": {"a": "two", "b": 3}}',
        "application/json",
        422,
        "/problems/invalid-arguments",
    ),
    (
        "POST",
        "/v1/tools/calculator__add/call",
        b'{"arguments": {"a": 1}}',
        "application/json",
        422,
        "/problems/invalid-arguments",
    ),
    ("POST", "/v1/tools/calculator__add/call", b"x" * 4096, "application/json", 413, "/problems/payload-too-large"),
    ("POST", "/v1/prompts/ghost__p/get", b"{}", "application/json", 404, "/problems/prompt-not-found"),
    (
        "POST",
        "/v1/prompts/calculator__explain_calculation/get",
        b'{"arguments": {"x": 1}}',
        "application/json",
        422,
        "/problems/validation-error",
    ),
    (
        "POST",
        "/v1/prompts/calculator__explain_calculation/get",
        b"{}",
        "application/json",
        422,
        "/problems/invalid-arguments",
    ),
    ("GET", "/v1/resources/read", None, None, 422, "/problems/validation-error"),
    ("GET", "/v1/resources/read?uri=nothing%3A%2F%2Fhere", None, None, 404, "/problems/resource-not-found"),
    ("GET", "/v1/resources/read?uri=test%3A%2F%2Fx&server=ghost", None, None, 404, "/problems/mcp-server-not-found"),
    ("GET", "/v1/resources/read?uri=%18%C3%9A&server=calculator", None, None, 422, "/problems/invalid-resource-uri"),
    ("GET", "/v1/resources/read?uri=x&server=calculator", None, None, 422, "/problems/invalid-resource-uri"),
    ("GET", "/v1/resources/read?uri=&server=calculator", None, None, 422, "/problems/invalid-resource-uri"),
    (
        "POST",
        "/v1/prompts/calculator__explain_calculation/get",
        b'{"arguments": {"expression": "1 + 1", "verbose": "yes"}}',
        "application/json",
        422,
        "/problems/invalid-arguments",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "type_"), BAD_REQUESTS)
async def test_bad_request_answers_problem_with_request_id_when_input_is_wrong(
    small_app: RunningApp, method: str, path: str, body: bytes | None, content_type: str | None, status: int, type_: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await small_app.http.request(method, path, content=body, headers=headers)
    assert_problem(response, status, type_)


async def test_validation_problem_lists_each_field_when_arguments_mismatch(small_app: RunningApp) -> None:
    response = await small_app.http.post("/v1/tools/calculator__add/call", json={"arguments": {"a": "two"}})
    body = assert_problem(response, 422, "/problems/invalid-arguments")
    errors = body["errors"]
    assert isinstance(errors, list) and len(errors) == 2
    assert {"field": "a", "message": "'two' is not of type 'number'"} in errors


async def test_body_limit_applies_when_body_is_streamed_without_length(small_app: RunningApp) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 512

    response = await small_app.http.post(
        "/v1/tools/calculator__add/call", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "/problems/payload-too-large")


async def test_request_id_is_echoed_when_client_sends_a_valid_one(small_app: RunningApp) -> None:
    response = await small_app.http.get("/nowhere", headers={"X-Request-ID": "trace-42.a_b"})
    assert response.headers["x-request-id"] == "trace-42.a_b"
    assert response.json()["request_id"] == "trace-42.a_b"


async def test_request_id_is_replaced_when_client_sends_an_unsafe_one(small_app: RunningApp) -> None:
    response = await small_app.http.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_openapi_documents_the_v1_routes() -> None:
    from backend.app import create_app
    from backend.config import Settings

    schema = create_app(Settings(), specs=[]).openapi()
    assert {"/v1/servers", "/v1/tools", "/v1/tools/{name}/call", "/v1/prompts", "/v1/resources/read", "/readyz"} <= set(
        schema["paths"]
    )
