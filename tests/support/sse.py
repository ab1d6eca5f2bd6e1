"""Read a Server-Sent Events response the way a browser's EventSource does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    type: str
    id: int
    data: Any


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "event" in fields:
                yield Event(fields["event"], int(fields["id"]), json.loads(fields.get("data", "null")))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


@asynccontextmanager
async def turn_events(
    http: httpx.AsyncClient, conversation_id: str, content: str
) -> AsyncIterator[AsyncIterator[Event]]:
    """POST a message with Accept: text/event-stream; leaving the block closes the connection."""
    headers = {"accept": "text/event-stream"}
    url = f"/v1/conversations/{conversation_id}/messages"
    async with http.stream("POST", url, json={"content": content}, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield events(response)


async def stream_turn(http: httpx.AsyncClient, conversation_id: str, content: str) -> list[Event]:
    """Stream one turn and collect every event up to `done`."""
    seen: list[Event] = []
    async with turn_events(http, conversation_id, content) as stream:
        async for event in stream:
            seen.append(event)
            if event.type == "done":
                break
    return seen
