"""Bad input is refused before it reaches an MCP server, and the JSON-RPC errors a server answers map by meaning.

The test server answers `protocol_error` (a tool, a prompt, the resource template test://protocol-errors/{code})
with the JSON-RPC error code it is given, and writes `request-<method>` to the marker directory for every request
that reaches it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tests.support.app_runner import RunningApp
from tests.support.problems import assert_problem

RESOURCE_READ_MARKER = "request-resources-read"
PROMPT_GET_MARKER = "request-prompts-get"


async def read_resource(app: RunningApp, uri: str) -> httpx.Response:
    return await app.http.get("/v1/resources/read", params={"uri": uri, "server": "test"})


MALFORMED_URIS = [
    ("\x18\xdaX", "control character U+0018 at position 0"),  # the reported request: %18%C3%9AX
    ("test://items/a\x7fb", "control character U+007F"),
    ("test://items/a\x85b", "control character U+0085"),
    ("test://items/a\x00b", "control character U+0000"),
    ("test://items/a b", "whitespace (U+0020)"),
    ("test://items/a\u00a0b", "whitespace (U+00A0)"),
    ("test://items/a\u202eb", "invisible, private-use or unassigned character U+202E"),
    ("test://items/a\nb", "control character U+000A"),
    ("test://items/50%zz", "'%' at position 15 that is not followed by two hex digits"),
    ("items/42", "has no scheme"),
    ("1test://items/42", "has no scheme"),
    ("test://items/{item_id}", "URI template"),
    ("test://items/a#b#c", "'#' in its fragment"),
    ("test://items/a[1]", "'[' in its path"),
    ("test://host:port/items", "authority 'host:port'"),
    ("test://items/" + "x" * 4096, "the limit is 4096"),
    ("", "is empty"),
]


VALID_URIS = [
    "test://items/42",
    "test://items/%18%C3%9A",  # percent-encoded, control characters are the server's business
    "test://items/zo\u00eb-\u0434\u043e\u043a",  # IRI letters, as servers list file names
    "test://items/a;b=c,d!$&'()*+@:~",
    "file:///C:/notes%20v2.txt",
    "http://user@[::1]:8080/a/b?c=d/e?#f/g?",
    "urn:isbn:0451450523",
]


async def test_resource_read_answers_422_without_asking_the_server_when_uri_is_malformed(
    app: RunningApp, marker_dir: Path
) -> None:
    asked = marker_dir / RESOURCE_READ_MARKER
    for uri, why in MALFORMED_URIS:
        response = await read_resource(app, uri)
        assert_problem(response, 422, "/problems/invalid-resource-uri", why, "RFC 3986", "GET /v1/resources")
        assert not asked.exists(), f"{uri!r} reached the server"
    # Valid URIs, unusual ones included, do reach the server: the marker is a real witness.
    for uri in VALID_URIS:
        response = await read_resource(app, uri)
        assert response.status_code in (200, 404), (uri, response.text)
        assert asked.exists(), f"{uri!r} did not reach the server"
        asked.unlink()


async def test_resource_read_answers_404_only_when_the_server_reports_the_resource_missing(app: RunningApp) -> None:
    # The stdio test server speaks 2026-07-28, where a missing resource is -32602 with the URI in `data`.
    assert app.mcp.connection("test").protocol_version in MODERN_PROTOCOL_VERSIONS
    missing = await read_resource(app, "test://nothing")
    assert_problem(missing, 404, "/problems/resource-not-found", "'test://nothing'", "GET /v1/resources")
    legacy = await read_resource(app, "test://protocol-errors/-32002")  # the code legacy-era servers send
    assert_problem(legacy, 404, "/problems/resource-not-found", "'test://protocol-errors/-32002'")
    rejected = await read_resource(app, "test://protocol-errors/-32602")  # a -32602 without a URI in `data`
    assert_problem(rejected, 422, "/problems/mcp-invalid-params", "rejected the parameters", "chosen error -32602")


# code the server answers → status, problem type, what the detail must say
ANSWERED_ERRORS = [
    (-32602, 422, "/problems/mcp-invalid-params", ["rejected the parameters", "chosen error -32602", "try again"]),
    (-32601, 501, "/problems/mcp-method-not-supported", ["does not support {method}", "retrying will not help"]),
    (-32603, 502, "/problems/mcp-error", ["chosen error -32603", "JSON-RPC error -32603", "Try again"]),
    (-32050, 502, "/problems/mcp-error", ["chosen error -32050", "GET /v1/servers/test"]),
]


@pytest.mark.parametrize("method", ["tools/call", "prompts/get", "resources/read"])
async def test_server_error_codes_map_to_problems_by_meaning(app: RunningApp, method: str) -> None:
    for code, status, type_, detail_parts in ANSWERED_ERRORS:
        if method == "tools/call":
            response = await app.http.post("/v1/tools/test__protocol_error/call", json={"arguments": {"code": code}})
        elif method == "prompts/get":
            response = await app.http.post(
                "/v1/prompts/test__protocol_error/get", json={"arguments": {"code": str(code)}}
            )
        else:
            response = await read_resource(app, f"test://protocol-errors/{code}")
        body = assert_problem(response, status, type_, *(part.format(method=method) for part in detail_parts))
        assert body["server"] == "test"
        assert body["code"] == code
    # A server's error is an answer, not a lost connection: the server stays ready and usable.
    echo = await app.http.post("/v1/tools/test__echo/call", json={"arguments": {"text": "still here"}})
    assert echo.json()["content"][0]["text"] == "still here"


async def test_prompt_get_answers_422_without_asking_the_server_when_an_argument_is_undeclared(
    app: RunningApp, marker_dir: Path
) -> None:
    response = await app.http.post("/v1/prompts/test__greet/get", json={"arguments": {"name": "Ada", "nick": "A"}})
    body = assert_problem(
        response, 422, "/problems/invalid-arguments", "does not declare the argument(s) 'nick'", "arguments are: name"
    )
    assert body["errors"] == [{"field": "nick", "message": "not an argument of this prompt"}]
    assert body["declared"] == ["name"]
    assert not (marker_dir / PROMPT_GET_MARKER).exists()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Ada\x00", "control character U+0000 at position 3"),
        ("Ada\x1b[31m", "control character U+001B"),
        ("Ada\x9b", "control character U+009B"),
        ("x" * 32_001, "is 32001 characters long; the limit is 32000"),
    ],
)
async def test_prompt_get_answers_422_without_asking_the_server_when_a_value_is_unfit(
    app: RunningApp, marker_dir: Path, value: str, why: str
) -> None:
    response = await app.http.post("/v1/prompts/test__greet/get", json={"arguments": {"name": value}})
    body = assert_problem(response, 422, "/problems/invalid-arguments", "Argument 'name' of prompt 'test__greet'", why)
    errors = body["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    assert errors[0]["field"] == "name" and why in errors[0]["message"]
    assert not (marker_dir / PROMPT_GET_MARKER).exists()
    # Tab, newline and carriage return are text, not control: they are sent.
    rendered = await app.http.post("/v1/prompts/test__greet/get", json={"arguments": {"name": "Ada\tB\r\nC"}})
    assert rendered.status_code == 200, rendered.text
    assert "Ada\tB\r\nC" in rendered.json()["messages"][0]["content"]["text"]
    assert (marker_dir / PROMPT_GET_MARKER).exists()


@pytest.mark.parametrize(
    "uri",
    ["https://ada:s3cret-pw@example.com/notes%zz", "test://ada:s3cret-pw@items/missing"],
)
async def test_a_password_in_a_resource_uri_never_comes_back_in_a_problem(app: RunningApp, uri: str) -> None:
    response = await read_resource(app, uri)
    assert response.status_code in (404, 422), response.text
    assert "s3cret-pw" not in response.text
    assert "ada:***@" in response.json()["detail"]
