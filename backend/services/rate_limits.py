"""Rate limits (the `limits` library): counters kept in memory, shared by every request of this process."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from backend.errors import RateLimitedError


class RateLimits:
    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, policy: str, rate: str, *key: str, what: str = "attempts") -> None:
        """Count one of `what` ("attempts") for `key` under `policy` (e.g. "auth-address", a client address), at
        `rate` ("10/minute").

        Raises:
            RateLimitedError: over one of the rate's limits; it says when to retry.
        """
        for item in parse_many(rate):
            if not await self._limiter.hit(item, policy, *key):
                raise await self._limited(item, policy, key, what)

    async def _limited(self, item: RateLimitItem, policy: str, key: tuple[str, ...], what: str) -> RateLimitedError:
        stats = await self._limiter.get_window_stats(item, policy, *key)
        retry_after_s = max(1, math.ceil(stats.reset_time - time.time()))
        return RateLimitedError(
            f"Too many {what}: at most {item.amount} per {item.get_expiry()} s. Try again in {retry_after_s} s.",
            policy=policy,
            limit=item.amount,
            window_s=item.get_expiry(),
            retry_after_s=retry_after_s,
        )
