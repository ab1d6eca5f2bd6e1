"""PostgreSQL and Redis for tests: their URLs come from the environment; absent, the test skips (in CI, fails)."""

from __future__ import annotations

import os

import pytest

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
