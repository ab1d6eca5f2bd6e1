"""The floor: the smallest host that answers MCP Chat's `POST /api/chat` shape, for benchmarks only.

One persistent MCP SDK session to the calculator (tools listed once), one keep-alive aiohttp client that posts
JSON to the model and decodes its answer (the leanest client measured, the one MCP Chat uses), no database, no
history, no validation, no logging: what any host must at least spend on a turn.
`python -m bench.floor --port N --model-url URL`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import uvicorn
from mcp import Client, StdioServerParameters
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build(model_url: str) -> Starlette:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_servers.calculator"])
        async with Client(params, mode="auto", read_timeout_seconds=60) as client:
            tools = (await client.list_tools()).tools
            state["client"] = client
            state["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": f"calculator__{t.name}",
                        "description": t.description or "",
                        "parameters": t.input_schema,
                    },
                }
                for t in tools
            ]
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench"}) as model:
                state["model"] = model
                yield

    async def chat(request: Request) -> JSONResponse:
        message = (await request.json())["message"]
        messages: list[dict[str, Any]] = [{"role": "user", "content": message}]
        calls_out: list[dict[str, Any]] = []
        while True:
            body = {"model": "gpt-4o-mini", "messages": messages, "tools": state["tools"]}
            async with state["model"].post(f"{model_url}/chat/completions", json=body) as response:
                answer = (await response.json())["choices"][0]["message"]
            if not answer.get("tool_calls"):
                return JSONResponse({"response": answer["content"], "tool_calls": calls_out})
            messages.append(answer)
            for call in answer["tool_calls"]:
                name, args = call["function"]["name"], json.loads(call["function"]["arguments"])
                result = await state["client"].call_tool(name.removeprefix("calculator__"), args)
                text = result.content[0].text
                calls_out.append({"name": name, "args": args, "result": text, "id": call["id"]})
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": text})

    async def call_add(request: Request) -> JSONResponse:
        arguments = (await request.json())["arguments"]
        result = await state["client"].call_tool("add", arguments)
        return JSONResponse(
            {
                "content": [c.model_dump(mode="json") for c in result.content],
                "structured_content": result.structured_content,
                "is_error": result.is_error,
            }
        )

    async def tools(_request: Request) -> JSONResponse:
        return JSONResponse({"tools": state["tools"]})

    async def ready(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    routes = [
        Route("/api/chat", chat, methods=["POST"]),
        Route("/tools/add/call", call_add, methods=["POST"]),
        Route("/api/tools", tools),
        Route("/readyz", ready),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(args.model_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
