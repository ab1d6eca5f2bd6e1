"""Cancel work whose HTTP client has gone away."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from anyio import CancelScope
from fastapi import Request

from backend.errors import AppError

T = TypeVar("T")


class ClientClosedRequestError(AppError):
    status, slug, title = 499, "client-closed-request", "Client closed request"


async def cancel_on_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, cancelling it (and so the MCP call it awaits) if the client disconnects first.

    Raises:
        ClientClosedRequestError: the client went away; nobody reads the answer.
        AppError: whatever `work` raised.
    """

    async def watch(scope: CancelScope) -> None:
        # The body was already read, so the next message can only be the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    outcome: list[T] = []
    failure: AppError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        try:
            outcome.append(await work())
        except AppError as exc:  # re-raised below, outside the task group, so it is not wrapped in a group
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if not outcome:
        raise ClientClosedRequestError("The client closed the connection before the answer was ready.")
    return outcome[0]
