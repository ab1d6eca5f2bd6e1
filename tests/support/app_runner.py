"""Run the real app under uvicorn on a pre-bound loopback socket, and talk to it over HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import uvicorn
from fastapi import FastAPI

from backend.app import create_app
from backend.config import Settings
from backend.mcp.models import ServerStatus
from backend.mcp.servers_file import ServerSpec
from backend.services.chat_service import ChatService
from backend.services.mcp_service import McpService

WAIT_S = 20


async def all_messages(http: httpx.AsyncClient, conversation_id: str) -> list[dict[str, Any]]:
    """Every stored message of a conversation, oldest first, read page by page as an API client would."""
    newest_first: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 200}
    while True:
        response = await http.get(f"/v1/conversations/{conversation_id}/messages", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        newest_first.extend(page["items"])
        if page["next_cursor"] is None:
            return newest_first[::-1]
        params["cursor"] = page["next_cursor"]


@dataclass
class RunningApp:
    base_url: str
    http: httpx.AsyncClient
    mcp: McpService
    chat: ChatService
    app: FastAPI

    async def wait_for_status(self, name: str, *statuses: ServerStatus) -> None:
        with anyio.fail_after(WAIT_S):
            await self.mcp.connection(name).wait_for_status(*statuses)

    async def new_conversation(self, title: str | None = None) -> str:
        response = await self.http.post("/v1/conversations", json={"title": title} if title else {})
        assert response.status_code == 201, response.text
        conversation_id: str = response.json()["id"]
        return conversation_id

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every stored message of the conversation, oldest first."""
        return await all_messages(self.http, conversation_id)

    async def wait_ready(self, *names: str) -> None:
        for name in names:
            await self.wait_for_status(name, ServerStatus.READY)


@asynccontextmanager
async def run_app(settings: Settings, specs: Sequence[ServerSpec]) -> AsyncIterator[RunningApp]:
    """Start the app on 127.0.0.1 port 0; stop it (lifespan exit included) when the block ends."""
    app = create_app(settings, specs)
    sock = socket.create_server(("127.0.0.1", 0))  # bound first: no readiness polling
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as for the fake model (see run_fake_openai)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", proxy_headers=False))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def serve() -> None:
        try:
            await server.serve([sock])
        except SystemExit as exc:  # uvicorn's answer to a failed lifespan start-up
            raise RuntimeError(f"the app failed to start (uvicorn exit {exc.code}); see the log above") from None

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=WAIT_S) as http:
                # The first answer comes only after lifespan start-up, so the service exists from here on.
                (await http.get("/healthz")).raise_for_status()
                yield RunningApp(base_url=base_url, http=http, mcp=app.state.mcp, chat=app.state.chat, app=app)
        finally:
            server.should_exit = True
    sock.close()
