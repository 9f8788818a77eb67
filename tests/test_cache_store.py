"""The cache level store: byte bound, GDSF eviction, TTL and invalidation by model version."""

from __future__ import annotations

import tracemalloc

import pytest

from services.cache.eviction import GdsfPolicy
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


def test_a_full_level_evicts_the_entry_used_least_often_first() -> None:
    value = b"x" * 100
    store = LevelStore(max_bytes=3 * entry_size("a", value), default_ttl_seconds=60)
    for key in "abc":
        store.put(key, value, compute_cost=1.0)
    store.get("a")
    store.get("c")
    evicted = store.put("d", value, compute_cost=1.0)
    assert evicted == 1
    assert store.get("b") is None
    assert all(store.get(k) is not None for k in "acd")
    assert store.bytes_used <= store.max_bytes
    assert store.counters.evictions == 1


def test_an_entry_that_saves_more_compute_outlives_a_cheaper_one_used_as_often() -> None:
    value = b"x" * 100
    store = LevelStore(max_bytes=2 * entry_size("heavy", value), default_ttl_seconds=60)
    store.put("heavy", value, compute_cost=22.0)
    store.put("cheap", value, compute_cost=1.0)
    store.put("fresh", value, compute_cost=1.0)
    assert store.get("cheap") is None
    assert store.get("heavy") is not None


def test_a_large_entry_goes_before_small_ones_of_the_same_cost_and_use() -> None:
    store = LevelStore(max_bytes=1200, default_ttl_seconds=60)
    store.put("large", b"x" * 600, compute_cost=1.0)
    store.put("small1", b"x" * 100, compute_cost=1.0)
    store.put("small2", b"x" * 100, compute_cost=1.0)
    store.put("small3", b"x" * 200, compute_cost=1.0)
    assert store.get("large") is None
    assert all(store.get(k) is not None for k in ("small1", "small2", "small3"))


def test_an_entry_popular_long_ago_ages_out_behind_entries_used_since() -> None:
    value = b"x" * 100
    store = LevelStore(max_bytes=2 * entry_size("a", value), default_ttl_seconds=60)
    store.put("old", value, compute_cost=1.0)
    for _ in range(3):
        store.get("old")
    # Each eviction raises the clock; fresh entries admitted after enough of them outrank an
    # entry whose hits all came before.
    for index in range(12):
        store.put(f"fresh{index}", value, compute_cost=1.0)
        store.get(f"fresh{index}")
    assert store.get("old") is None


def test_expired_entries_are_dropped_before_any_live_entry_is_evicted() -> None:
    clock = FakeClock()
    value = b"x" * 100
    store = LevelStore(max_bytes=2 * entry_size("old", value), default_ttl_seconds=60, clock=clock)
    store.put("exp", value, compute_cost=50.0, ttl_seconds=1)
    store.put("liv", value, compute_cost=1.0)
    clock.now = 2
    assert store.put("new", value, compute_cost=1.0) == 0
    assert store.get("liv") is not None and store.get("new") is not None
    assert store.counters.removals == 1 and store.counters.evictions == 0


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


def test_many_hits_on_few_entries_keep_the_eviction_heap_small_and_the_victims_in_order() -> None:
    policy = GdsfPolicy()
    keys = [f"entry{index}" for index in range(10)]
    for key in keys:
        policy.admit(key, cost=1.0, size=100)
    tracemalloc.start()
    try:
        # 110,000 hits in all, the first entry's most: bookkeeping that grew with the hits would
        # hold a heap item for each, megabytes; ten entries' worth is a few kilobytes.
        for index, key in enumerate(keys):
            for _ in range(2_000 * (len(keys) - index)):
                policy.touch(key)
        held_bytes = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held_bytes < 256 * 1024
    assert [policy.victim() for _ in keys] == keys[::-1]


def test_the_models_an_entry_names_count_against_the_byte_bound() -> None:
    # Three long model names on a one-byte value: the names, not the value, are what the entry holds.
    names = tuple((letter * 256, 1) for letter in "abc")
    store = LevelStore(max_bytes=4096, default_ttl_seconds=60)
    store.put("k", b"v", produced_by=names)
    assert store.bytes_used - entry_size("k", b"v") >= 3 * 256
    for index in range(400):
        store.put(f"k{index}", b"v", produced_by=names)
    assert store.entries * 3 * 256 <= store.bytes_used <= store.max_bytes
    kept = store.entries
    assert store.invalidate("a" * 256) == kept
    assert store.entries == store.bytes_used == 0
