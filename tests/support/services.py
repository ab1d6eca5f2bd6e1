"""PostgreSQL and Redis for tests: their URLs come from the environment; absent, the test skips (in CI, fails)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import Connection

from backend.db.database import open_database

POSTGRES_URL_VAR = "MCPCHAT_TEST_POSTGRES_URL"
REDIS_URL_VAR = "MCPCHAT_TEST_REDIS_URL"
REQUIRE_VAR = "MCPCHAT_TEST_REQUIRE_SERVICES"


def service_url(variable: str) -> str:
    """The service's URL; skips the test where it is not configured, fails instead when CI requires services."""
    url = os.environ.get(variable, "")
    if url:
        return url
    reason = f"{variable} is not set: this test needs that service (.ci/run sets it)"
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_VAR}=1 forbids skipping")
    pytest.skip(reason)


async def empty_postgres() -> str:
    """The test PostgreSQL database's URL, emptied first: whatever an earlier run (of any revision) left there is
    dropped, so each test starts from nothing."""
    url = service_url(POSTGRES_URL_VAR)
    database = open_database(url)
    try:

        def empty(connection: Connection) -> None:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")

        await database.write(empty)
    finally:
        await database.aclose()
    return url
