"""Names exposed to an LLM: `<server>__<tool>`, within `^[a-zA-Z0-9_-]{1,64}$`, unique and stable.

A name that is already valid is used as it is. Anything else (bad characters, too long, or taken
by another pair) becomes a sanitized prefix plus a hash of the pair, so the same configuration
gives the same names after every restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_NAME_LENGTH = 64
SEPARATOR = "__"
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LENGTH = 8


def _hashed_name(server: str, item: str) -> str:
    digest = hashlib.sha256(f"{server}\0{item}".encode()).hexdigest()[:_HASH_LENGTH]
    prefix = _INVALID_CHARS.sub("_", f"{server}{SEPARATOR}{item}")
    return f"{prefix[: MAX_NAME_LENGTH - _HASH_LENGTH - 1]}_{digest}"


def exposed_names(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Give each (server, tool) pair its exposed name; every name is valid and no two are equal."""
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for server, item in sorted(set(pairs)):
        plain = f"{server}{SEPARATOR}{item}"
        name = plain if _VALID.fullmatch(plain) and plain not in taken else _hashed_name(server, item)
        suffix = 2
        while name in taken:  # two pairs with the same hash prefix: astronomically rare, still never equal
            name = f"{_hashed_name(server, item)[: MAX_NAME_LENGTH - 3]}_{suffix:02d}"
            suffix += 1
        taken.add(name)
        names[(server, item)] = name
    return names
