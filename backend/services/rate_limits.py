"""Rate limits (the `limits` library, moving window), counted in the store create_app opens: this process's memory,
or Redis, shared by every replica (backend/clients/counter_store.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from typing import TypeVar

import anyio
import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from backend.clients.counter_store import COUNTER_STORE_TIMEOUT_S
from backend.errors import RateLimitedError, RateLimitsUnavailableError

log = structlog.get_logger(__name__)
T = TypeVar("T")

UNAVAILABLE_DETAIL = (
    "The rate-limit counters (Redis, MCPCHAT_REDIS_URL) did not answer, so nothing was done. Try again shortly; "
    "if this lasts, whoever runs MCP Chat needs to look at Redis."
)


class RateLimits:
    def __init__(self, storage: Storage) -> None:
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, policy: str, rate: str, *key: str, what: str = "attempts") -> None:
        """Count one of `what` ("attempts") for `key` under `policy` (e.g. "auth-address", a client address), at
        `rate` ("10/minute").

        Raises:
            RateLimitedError: over one of the rate's limits; it says when to retry.
            RateLimitsUnavailableError: the counters' store did not answer.
        """
        for item in parse_many(rate):
            if not await self._ask(self._limiter.hit(item, policy, *key)):
                raise await self._limited(item, policy, key, what)

    async def _limited(self, item: RateLimitItem, policy: str, key: tuple[str, ...], what: str) -> RateLimitedError:
        stats = await self._ask(self._limiter.get_window_stats(item, policy, *key))
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimitedError(
            f"Too many {what}: at most {item.amount} per {item.get_expiry()} s. Try again in {retry_after_s} s.",
            policy=policy,
            limit=item.amount,
            window_s=item.get_expiry(),
            retry_after_s=retry_after_s,
        )

    async def _ask(self, question: Awaitable[T]) -> T:
        """Raises:
        RateLimitsUnavailableError: the store failed, or did not answer in time."""
        try:
            with anyio.fail_after(COUNTER_STORE_TIMEOUT_S * 2):  # redis-py may connect, then send the command
                return await question
        except (StorageError, TimeoutError) as exc:
            log.warning("rate_limits.store.failed", error=str(exc) or type(exc).__name__)
            raise RateLimitsUnavailableError(UNAVAILABLE_DETAIL) from exc
