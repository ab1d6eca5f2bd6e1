"""/v1/tools, /v1/prompts, /v1/resources against the real calculator and test server."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import httpx

from backend.mcp.models import Progress
from tests.support.app_runner import RunningApp
from tests.support.waiting import wait_until


async def test_tools_are_namespaced_with_schemas_and_annotations(app: RunningApp) -> None:
    tools = {tool["name"]: tool for tool in (await app.http.get("/v1/tools")).json()["items"]}
    add = tools["calculator__add"]
    assert (add["server"], add["original_name"]) == ("calculator", "add")
    assert add["input_schema"]["type"] == "object"
    assert set(add["input_schema"]["required"]) == {"a", "b"}
    assert add["output_schema"] is not None
    assert add["annotations"]["readOnlyHint"] is True
    assert {"calculator__sum", "calculator__sum_many", "calculator__multiply", "calculator__divide"} <= set(tools)
    assert "test__echo" in tools


async def test_tool_list_pages_when_limit_is_small(app: RunningApp) -> None:
    everything = (await app.http.get("/v1/tools")).json()["items"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await app.http.get("/v1/tools", params=params)).json()
        seen.extend(tool["name"] for tool in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [tool["name"] for tool in everything]


async def test_tool_call_returns_text_and_structured_content(app: RunningApp) -> None:
    response = await app.http.post("/v1/tools/calculator__add/call", json={"arguments": {"a": 2, "b": 3}})
    assert response.status_code == 200
    body = response.json()
    assert body["is_error"] is False
    assert body["structured_content"] == {"result": 5}
    assert "5" in body["content"][0]["text"]
    assert body["duration_ms"] >= 0


async def test_tool_error_is_a_result_when_dividing_by_zero(app: RunningApp) -> None:
    response = await app.http.post("/v1/tools/calculator__divide/call", json={"arguments": {"a": 1, "b": 0}})
    assert response.status_code == 200
    body = response.json()
    assert body["is_error"] is True
    assert "zero" in body["content"][0]["text"].lower()
    again = await app.http.post("/v1/tools/calculator__divide/call", json={"arguments": {"a": 6, "b": 3}})
    assert again.json()["structured_content"] == {"result": 2}


async def test_tool_results_keep_images_structured_content_and_embedded_resources(app: RunningApp) -> None:
    image = (await app.http.post("/v1/tools/test__image/call", json={"arguments": {}})).json()
    block = next(b for b in image["content"] if b["type"] == "image")
    assert block["mimeType"] == "image/png"
    assert base64.b64decode(block["data"]).startswith(b"\x89PNG")
    structured = (await app.http.post("/v1/tools/test__structured/call", json={"arguments": {"n": 7}})).json()
    assert structured["structured_content"] == {"n": 7, "squared": 49}
    embedded = (await app.http.post("/v1/tools/test__embedded_resource/call", json={"arguments": {}})).json()
    resource_block = next(b for b in embedded["content"] if b["type"] == "resource")
    assert resource_block["resource"]["uri"] == "test://embedded"
    failed = (await app.http.post("/v1/tools/test__fail/call", json={"arguments": {}})).json()
    assert failed["is_error"] is True
    assert failed["content"][0]["text"] == "this tool always fails"


async def test_timeout_answers_504_and_cancels_on_the_server(app: RunningApp, marker_dir: Path) -> None:
    # The test server's timeout_s is 5: the hang outlives it.
    response = await app.http.post("/v1/tools/test__hang/call", json={"arguments": {"seconds": 600}})
    assert response.status_code == 504
    assert response.json()["type"] == "/problems/mcp-timeout"
    await wait_until(lambda: (marker_dir / "cancelled-hang").exists())


async def test_client_disconnect_cancels_the_call_on_the_server(app: RunningApp, marker_dir: Path) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as impatient:
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await impatient.post("/v1/tools/test__hang/call", json={"arguments": {"seconds": 600}})

            tg.start_soon(call)
            await wait_until(lambda: (marker_dir / "started-hang").exists())
            tg.cancel_scope.cancel()  # closes the connection mid-request
    await wait_until(lambda: (marker_dir / "cancelled-hang").exists())
    # The server stays usable.
    echo = await app.http.post("/v1/tools/test__echo/call", json={"arguments": {"text": "still here"}})
    assert echo.json()["content"][0]["text"] == "still here"


async def test_progress_notifications_reach_the_caller(app: RunningApp) -> None:
    seen: list[Progress] = []

    async def on_progress(progress: Progress) -> None:
        seen.append(progress)

    result = await app.mcp.call_tool("test__progress", {"steps": 3, "delay_s": 0.01}, on_progress)
    assert result.content[0]["text"] == "done"
    await wait_until(lambda: len(seen) == 3)
    assert [(p.progress, p.total, p.message) for p in seen] == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_tool_list_refreshes_when_server_reports_a_change(app: RunningApp) -> None:
    response = await app.http.post("/v1/tools/test__add_tool/call", json={"arguments": {"name": "fresh"}})
    assert response.status_code == 200

    async def listed() -> set[str]:
        return {tool["name"] for tool in (await app.http.get("/v1/tools")).json()["items"]}

    await wait_until(lambda: any(tool.name == "test__fresh" for tool in app.mcp.tools()))
    assert "test__fresh" in await listed()
    assert (await app.http.get("/v1/servers/test")).json()["tool_count"] == len(app.mcp.connection("test").tools)


async def test_prompts_are_listed_and_rendered(app: RunningApp) -> None:
    prompts = {p["name"]: p for p in (await app.http.get("/v1/prompts")).json()["items"]}
    explain = prompts["calculator__explain_calculation"]
    assert explain["arguments"][0]["required"] is True
    argument = explain["arguments"][0]["name"]
    rendered = await app.http.post(
        "/v1/prompts/calculator__explain_calculation/get", json={"arguments": {argument: "2 + 3"}}
    )
    assert rendered.status_code == 200
    assert "2 + 3" in rendered.json()["messages"][0]["content"]["text"]


async def test_resources_and_templates_are_listed_and_read(app: RunningApp) -> None:
    resources = (await app.http.get("/v1/resources")).json()["items"]
    assert {"uri": "test://greeting", "server": "test"}.items() <= next(
        r for r in resources if r["uri"] == "test://greeting"
    ).items()
    templates = (await app.http.get("/v1/resources/templates")).json()["items"]
    assert any(t["uri_template"] == "test://items/{item_id}" for t in templates)
    greeting = await app.http.get("/v1/resources/read", params={"uri": "test://greeting"})
    assert greeting.json()["contents"][0]["text"] == "hello"
    item = await app.http.get("/v1/resources/read", params={"uri": "test://items/42", "server": "test"})
    assert item.json()["contents"][0]["text"] == "item 42"
    by_template = await app.http.get("/v1/resources/read", params={"uri": "test://items/7"})
    assert by_template.json()["server"] == "test"


async def test_servers_are_described_with_protocol_and_counts(app: RunningApp) -> None:
    servers = {s["name"]: s for s in (await app.http.get("/v1/servers")).json()["items"]}
    calculator = servers["calculator"]
    assert calculator["status"] == "ready"
    assert calculator["transport"] == "stdio"
    assert calculator["server_name"] == "calculator"
    assert calculator["protocol_version"]
    assert calculator["tool_count"] == 5
    assert isinstance(calculator["pid"], int)
    assert (await app.http.get("/readyz")).json()["servers"] == {"calculator": "ready", "test": "ready"}
