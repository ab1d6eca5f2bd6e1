"""Where rate-limit counters live: this process's memory, or Redis (MCPCHAT_REDIS_URL), which every replica shares.

The only module that imports redis, and only when MCPCHAT_REDIS_URL is set (a tenth of start-up otherwise): it
opens the connection pool the `limits` library counts in, checks it once, and closes it. Failures at a request
reach RateLimits as `limits.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from limits.aio.storage import MemoryStorage, RedisStorage, Storage

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

COUNTER_STORE_TIMEOUT_S = 2.0  # for each Redis command, and for connecting
REDIS_KEY_PREFIX = "mcpchat"  # beside other applications' keys in the same Redis database


class CounterStoreUnreachableError(Exception):
    """Redis did not answer at start-up; the message names MCPCHAT_REDIS_URL (never its password)."""


@asynccontextmanager
async def open_counter_store(redis_url: str | None) -> AsyncIterator[Storage]:
    """Counters in memory when `redis_url` is None; else in Redis, after one PING. Connections close on exit.

    Raises:
        CounterStoreUnreachableError: Redis did not answer the PING.
    """
    if redis_url is None:
        yield MemoryStorage()
        return
    from redis.asyncio import ConnectionPool  # only with Redis: see the module's docstring

    pool = ConnectionPool.from_url(
        redis_url, socket_connect_timeout=COUNTER_STORE_TIMEOUT_S, socket_timeout=COUNTER_STORE_TIMEOUT_S
    )
    try:
        await _check(pool, redis_url)
        # `limits` types its options as scalars, but hands them to redis-py, which takes a pool: ours, so that we
        # close its connections.
        yield RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=REDIS_KEY_PREFIX,
            wrap_exceptions=True,
            connection_pool=pool,  # type: ignore[arg-type]
        )
    finally:
        await pool.aclose()


async def _check(pool: ConnectionPool, redis_url: str) -> None:
    """Raises:
    CounterStoreUnreachableError: no answer to a PING."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    try:
        with anyio.fail_after(COUNTER_STORE_TIMEOUT_S * 2):  # connecting, then the command
            # redis-py types ping() for its blocking and asyncio clients at once; the asyncio one's is awaitable.
            await Redis(connection_pool=pool).ping()  # type: ignore[misc]
    except (RedisError, OSError, TimeoutError) as exc:
        url = urlsplit(redis_url)
        where = f"{url.hostname}:{url.port or 6379}{url.path or '/0'}"  # not the password the URL may hold
        raise CounterStoreUnreachableError(
            f"MCPCHAT_REDIS_URL: Redis at {where} did not answer ({str(exc) or type(exc).__name__}). Start it or "
            "correct the URL; or unset MCPCHAT_REDIS_URL to keep rate-limit counters in this process (then each "
            "replica counts on its own)."
        ) from exc
