"""The weighted cache: bounded by total weight, least recently used out first."""

from __future__ import annotations

from backend.services.weighted_cache import WeightedCache


def test_the_least_recently_used_entries_go_first_when_the_weight_bound_is_passed() -> None:
    cache: WeightedCache[str, str] = WeightedCache(max_weight=10, weight=len)
    cache.put("a", "aaaa")
    cache.put("b", "bbbb")
    assert cache.get("a") == "aaaa"  # now "b" is the least recently used
    cache.put("c", "cccc")
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.total_weight == 8


def test_a_value_heavier_than_the_bound_is_not_kept_and_replaces_nothing_else() -> None:
    cache: WeightedCache[str, str] = WeightedCache(max_weight=10, weight=len)
    cache.put("a", "aaaa")
    cache.put("huge", "x" * 11)
    assert (cache.get("huge"), cache.get("a"), cache.total_weight) == (None, "aaaa", 4)


def test_putting_a_key_again_replaces_its_value_and_weight() -> None:
    cache: WeightedCache[str, str] = WeightedCache(max_weight=10, weight=len)
    cache.put("a", "aaaa")
    cache.put("a", "aa")
    assert (cache.get("a"), len(cache), cache.total_weight) == ("aa", 1, 2)


def test_get_many_answers_all_or_nothing_and_refreshes_what_it_found() -> None:
    cache: WeightedCache[str, str] = WeightedCache(max_weight=12, weight=len)
    for key in "abc":
        cache.put(key, key * 4)
    assert cache.get_many(["a", "c"]) == ["aaaa", "cccc"]
    assert cache.get_many(["a", "missing"]) is None
    cache.put("d", "dddd")  # "b" is now the least recently used
    assert sorted(cache.keys()) == ["a", "c", "d"]
