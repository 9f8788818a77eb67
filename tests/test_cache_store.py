"""The cache level store: byte bound, least-recently-used eviction, TTL and invalidation by model version."""

from __future__ import annotations

import pytest

from services.cache.store import ENTRY_OVERHEAD_BYTES, EntryTooLarge, LevelStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def entry_size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


def test_a_stored_value_is_found_and_counted_as_a_hit() -> None:
    store = LevelStore(max_bytes=10_000, default_ttl_seconds=60)
    store.put("k", b"value", compute_cost=3.0)
    found = store.get("k")
    assert found is not None and found.value == b"value"
    assert store.get("other") is None
    assert (store.counters.hits, store.counters.misses, store.counters.compute_saved) == (1, 1, 3.0)


def test_the_least_recently_used_entry_is_evicted_first_to_stay_within_bounds() -> None:
    value = b"x" * 100
    store = LevelStore(max_bytes=3 * entry_size("a", value), default_ttl_seconds=60)
    for key in "abc":
        store.put(key, value)
    store.get("a")  # a is now more recent than b
    evicted = store.put("d", value)
    assert evicted == 1
    assert store.get("b") is None
    assert all(store.get(k) is not None for k in "acd")
    assert store.bytes_used <= store.max_bytes
    assert store.counters.evictions == 1


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    store = LevelStore(max_bytes=10_000, default_ttl_seconds=60)
    store.put("k", b"a" * 10)
    store.put("k", b"b" * 30)
    assert store.entries == 1
    assert store.bytes_used == entry_size("k", b"b" * 30)
    assert store.get("k").value == b"b" * 30


def test_an_entry_larger_than_the_bound_is_refused_and_nothing_is_evicted() -> None:
    store = LevelStore(max_bytes=200, default_ttl_seconds=60)
    store.put("small", b"s")
    with pytest.raises(EntryTooLarge, match="exceeds"):
        store.put("big", b"x" * 500)
    assert store.get("small") is not None


def test_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    store = LevelStore(max_bytes=10_000, default_ttl_seconds=10, clock=clock)
    store.put("default", b"v")
    store.put("short", b"v", ttl_seconds=2)
    clock.now = 5
    assert store.get("short") is None
    assert store.get("default") is not None
    clock.now = 11
    assert store.get("default") is None
    assert store.entries == 0 and store.bytes_used == 0


def test_invalidation_removes_only_what_the_named_model_version_produced() -> None:
    store = LevelStore(max_bytes=10_000, default_ttl_seconds=60)
    store.put("v1", b"a", produced_by=(("cheap", 1), ("heavy", 1)))
    store.put("v2", b"b", produced_by=(("heavy", 2),))
    store.put("other", b"c", produced_by=(("cheap", 1),))
    assert store.invalidate("heavy", 1) == 1
    assert store.get("v1") is None and store.get("v2") is not None
    assert store.invalidate("cheap") == 1
    assert store.get("other") is None
