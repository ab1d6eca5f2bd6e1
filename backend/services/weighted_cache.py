"""A cache bounded by the total weight of its values, least recently used out first.

For lookups made hundreds of times a turn (one per history turn), so they come in batches: `get_many` maps
C-level OrderedDict calls over the keys (no bytecode per key), and `keys()` answers `in` without a Python call;
a general-purpose cache's per-lookup method call costs several times as much.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, KeysView, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WeightedCache(Generic[K, V]):
    def __init__(self, max_weight: int, weight: Callable[[V], int]) -> None:
        self.max_weight = max_weight
        self._weight = weight
        self._values: OrderedDict[K, V] = OrderedDict()  # least recently used first
        self._weights: dict[K, int] = {}
        self.total_weight = 0

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> KeysView[K]:
        """A live view of the keys: `key in cache.keys()` costs a dict lookup."""
        return self._values.keys()

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None if absent."""
        found = self.get_many((key,))
        return found[0] if found is not None else None

    def get_many(self, keys: Sequence[K]) -> list[V] | None:
        """Every key's value, in order, each now the most recently used; None if any is absent."""
        try:
            out = list(map(self._values.__getitem__, keys))
        except KeyError:
            return None
        deque(map(self._values.move_to_end, keys), maxlen=0)  # a C-level loop that keeps nothing
        return out

    def put(self, key: K, value: V) -> None:
        """Keep `value` unless it alone outweighs the bound; evict the least recently used until it fits."""
        weight = self._weight(value)
        if key in self._values:
            del self._values[key]
            self.total_weight -= self._weights.pop(key)
        if weight > self.max_weight:
            return
        self._values[key] = value
        self._weights[key] = weight
        self.total_weight += weight
        while self.total_weight > self.max_weight:
            oldest, _ = self._values.popitem(last=False)
            self.total_weight -= self._weights.pop(oldest)
