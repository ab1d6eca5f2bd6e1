"""Waiting on things outside our event loop (another process, a file), always bounded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import psutil

POLL_S = 0.02


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Return once `condition()` holds; fail the test after `timeout_s`.

    Only for state no event reports (a file another process writes, a process exiting).
    """
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - the state lives in another process
            await anyio.sleep(POLL_S)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """`wait_until` for a check that must await (a database read): what another task settles and no event reports."""
    with anyio.fail_after(timeout_s):
        while not await check():  # noqa: ASYNC110 - the state is in the database, written by another task
            await anyio.sleep(POLL_S)


def is_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
