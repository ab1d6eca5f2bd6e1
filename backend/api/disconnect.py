"""Cancel work whose HTTP client has gone away."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from anyio import CancelScope
from anyio.abc import TaskGroup
from fastapi import Request
from starlette.types import Receive

from backend.errors import AppError

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ClientClosedRequestError(AppError):
    status, slug, title = 499, "client-closed-request", "Client closed request"


class _Watch:
    """Waits for the client's disconnect and cancels the work's scope if the work is still running.

    It ends by itself: after the response is sent, the server answers a pending receive() with a disconnect
    (ASGI), so it is never cancelled: cancelling a watcher in a task group of its own when the work ended cost a
    chat turn more than anything else here."""

    def __init__(self, receive: Receive, scope: CancelScope) -> None:
        self.receive, self.scope = receive, scope
        self.is_done = False

    async def run(self) -> None:
        try:
            # The body was already read, so the next message can only be the disconnect.
            while (await self.receive())["type"] != "http.disconnect":
                pass
        except Exception:  # supervisor boundary: it runs in the lifespan's task group, which must not fall
            log.warning("http.disconnect_watch.failed", exc_info=True)
            return
        if not self.is_done:
            self.scope.cancel()


async def cancel_on_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`, cancelling it (and so the MCP call it awaits) if the client disconnects first.

    Raises:
        ClientClosedRequestError: the client went away; nobody reads the answer.
        AppError: whatever `work` raised.
    """
    watchers: TaskGroup = request.state.watchers  # the lifespan's: the watcher outlives this call
    outcome: list[T] = []
    with CancelScope() as scope:
        watch = _Watch(request.receive, scope)
        watchers.start_soon(watch.run, name="disconnect-watch")
        try:
            outcome.append(await work())
        finally:
            watch.is_done = True
    if not outcome:  # only our scope's cancel ends the block without an outcome or an exception
        raise ClientClosedRequestError("The client closed the connection before the answer was ready.")
    return outcome[0]
