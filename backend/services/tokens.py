"""Counting tokens for context budgets: tiktoken where the model's encoding can be loaded, an estimate otherwise.

tiktoken downloads an encoding the first time it is used; on a machine without internet (and without a
pre-filled TIKTOKEN_CACHE_DIR) that fails, and the estimate (about 4 characters a token, rounded up, which
over-counts English slightly, so budgets err on the safe side) takes over.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import anyio
import structlog

log = structlog.get_logger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators around each message
LOAD_TIMEOUT_S = 5.0


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@cache
def _tiktoken_counter(model: str) -> Callable[[str], int] | None:
    try:
        import tiktoken

        encoding = tiktoken.encoding_for_model(model)
    except Exception as exc:  # unknown model, or the encoding file cannot be fetched: estimate instead
        log.info("tokens.estimating", model=model, reason=f"{type(exc).__name__}: {exc}"[:200])
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


class TokenCounter:
    def __init__(self, count: Callable[[str], int] = estimate_tokens, exact: bool = False) -> None:
        self._count, self.exact = count, exact

    def text(self, text: str) -> int:
        return self._count(text) if text else 0

    def message(self, *parts: str) -> int:
        return MESSAGE_OVERHEAD_TOKENS + sum(self.text(part) for part in parts)


async def load_token_counter(model: str) -> TokenCounter:
    """The best counter for `model`, found without blocking the event loop for more than LOAD_TIMEOUT_S."""
    with anyio.move_on_after(LOAD_TIMEOUT_S):
        counter = await anyio.to_thread.run_sync(_tiktoken_counter, model, abandon_on_cancel=True)
        if counter is not None:
            return TokenCounter(counter, exact=True)
    return TokenCounter()
