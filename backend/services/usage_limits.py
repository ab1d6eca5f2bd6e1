"""How much each user, and each API key, may use: chat turns (MCPCHAT_RATE_CHAT) and direct tool calls, prompt
gets and resource reads (MCPCHAT_RATE_TOOLS), counted in RateLimits."""

from __future__ import annotations

from backend.auth.principal import Principal
from backend.services.rate_limits import RateLimits


class UsageLimits:
    def __init__(self, rates: RateLimits, chat_rate: str | None, tools_rate: str | None) -> None:
        """`chat_rate` and `tools_rate` are `limits` rate strings; None: that use is not limited, nor counted."""
        self._rates = rates
        self._chat_rate, self._tools_rate = chat_rate, tools_rate

    async def count_chat_turn(self, caller: Principal) -> None:
        """Count one chat turn of the caller.

        Raises:
            RateLimitedError: the caller's user, or API key, is over the chat rate.
            RateLimitsUnavailableError: the counters' store (Redis) did not answer.
        """
        if self._chat_rate is not None:
            await self._count("chat", self._chat_rate, caller, "chat turns")

    async def count_tool_call(self, caller: Principal) -> None:
        """Count one direct tool call, prompt get or resource read of the caller.

        Raises:
            RateLimitedError: the caller's user, or API key, is over the tools rate.
            RateLimitsUnavailableError: the counters' store (Redis) did not answer.
        """
        if self._tools_rate is not None:
            await self._count("tools", self._tools_rate, caller, "tool calls, prompt gets and resource reads")

    async def _count(self, use: str, rate: str, caller: Principal, what: str) -> None:
        # The key's counter first: a key over its rate then spends nothing of its user's, which the user's other
        # keys and sessions share.
        if caller.key_id is not None:
            await self._rates.hit(f"{use}-key", rate, caller.key_id, what=f"{what} with this API key")
        await self._rates.hit(f"{use}-user", rate, caller.user_id, what=f"{what} by this user")
