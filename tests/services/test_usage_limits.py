"""Which counters a caller's use is counted in: their user's always, and the API key's when a key was used."""

from __future__ import annotations

import pytest
from limits.aio.storage import MemoryStorage

from backend.auth.principal import AuthMethod, Principal
from backend.db.models import UserRole
from backend.errors import RateLimitedError
from backend.services.rate_limits import RateLimits
from backend.services.usage_limits import UsageLimits


def caller(user_id: str, key_id: str | None = None) -> Principal:
    method = AuthMethod.SESSION if key_id is None else AuthMethod.API_KEY
    return Principal(user_id, UserRole.MEMBER, method, key_id=key_id)


async def test_a_key_is_refused_on_its_own_counter_and_its_user_on_theirs_across_keys_and_sessions() -> None:
    usage = UsageLimits(RateLimits(MemoryStorage()), chat_rate="2/minute", tools_rate=None)
    await usage.count_chat_turn(caller("ada", "key-1"))
    await usage.count_chat_turn(caller("ada", "key-1"))
    with pytest.raises(RateLimitedError) as over_key:
        await usage.count_chat_turn(caller("ada", "key-1"))
    assert over_key.value.policy == "chat-key"
    assert "with this API key" in over_key.value.detail
    with pytest.raises(RateLimitedError) as over_user:  # a fresh key, but the user spent the rate with the other one
        await usage.count_chat_turn(caller("ada", "key-2"))
    assert over_user.value.policy == "chat-user"
    with pytest.raises(RateLimitedError):
        await usage.count_chat_turn(caller("ada"))
    await usage.count_chat_turn(caller("bob", "key-3"))
    await usage.count_tool_call(caller("ada", "key-1"))  # no tools rate: nothing is counted
