"""A cache bounded by the total weight of its values, least recently used out first.

For lookups made hundreds of times a turn (one per history turn): it is a plain dict underneath, so a lookup
costs what a dict lookup does (cachetools' LRUCache, Python-level on every access, cost 1.5 us a lookup).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WeightedCache(Generic[K, V]):
    def __init__(self, max_weight: int, weight: Callable[[V], int]) -> None:
        self.max_weight = max_weight
        self._weight = weight
        self._entries: dict[K, tuple[V, int]] = {}
        self.total_weight = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None if absent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._entries[key] = entry  # re-inserted: dict order is recency order
        return entry[0]

    def peek(self, key: K) -> V | None:
        """The value, its place in the eviction order unchanged (a plain dict lookup); None if absent."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: K, value: V) -> None:
        """Keep `value` unless it alone outweighs the bound; evict the least recently used until it fits."""
        weight = self._weight(value)
        old = self._entries.pop(key, None)
        if old is not None:
            self.total_weight -= old[1]
        if weight > self.max_weight:
            return
        self._entries[key] = (value, weight)
        self.total_weight += weight
        while self.total_weight > self.max_weight:
            oldest = next(iter(self._entries))
            self.total_weight -= self._entries.pop(oldest)[1]
