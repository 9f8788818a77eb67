"""One exact-key cache level in memory: a byte bound with GDSF eviction, TTLs, and removal by model version.

Pure logic, no gRPC. Not thread-safe: the cache service calls it from one asyncio event loop.
Each entry is kept whole, so a lookup sees either the old value or the new one, never a mix.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from services.cache.eviction import GdsfPolicy

# Bookkeeping that each entry costs beyond its key and value, so that many tiny entries still
# count against the bound.
ENTRY_OVERHEAD_BYTES = 64
# What each model an entry names in produced_by costs beyond its name's bytes: its version and its
# place in the level's index of models.
MODEL_REF_OVERHEAD_BYTES = 32


class EntryTooLarge(ValueError):
    """An entry is larger than the level's whole byte bound."""


def produced_by_bytes(produced_by: tuple[tuple[str, int], ...]) -> int:
    """Bytes an entry's produced_by counts against the bound: each model's name and its overhead."""
    return sum(len(name.encode()) + MODEL_REF_OVERHEAD_BYTES for name, _ in produced_by)


def entry_size(key: str, value: bytes, produced_by: tuple[tuple[str, int], ...]) -> int:
    """Bytes an exact-key entry counts against its level's bound, in memory or in Redis alike."""
    return len(key.encode()) + len(value) + produced_by_bytes(produced_by) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True)
class StoredEntry:
    """A value and what it depends on."""

    value: bytes
    # (model name, version) pairs the value was made with.
    produced_by: tuple[tuple[str, int], ...]
    compute_cost: float
    expires_at: float

    def size(self, key: str) -> int:
        """Bytes the entry counts against the bound."""
        return entry_size(key, self.value, self.produced_by)


@dataclass
class LevelCounters:
    """What happened at a level since it started."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    removals: int = 0
    compute_saved: float = 0.0


def made_by(produced_by: tuple[tuple[str, int], ...], model_name: str, model_version: int) -> bool:
    """Whether a value made with ``produced_by`` depends on the model (any version when ``model_version`` is 0)."""
    return any(n == model_name and (model_version == 0 or v == model_version) for n, v in produced_by)


@dataclass
class ModelIndex:
    """Model name -> keys of the entries it produced, so that invalidation reads only those entries."""

    _keys: dict[str, set[Hashable]] = field(default_factory=dict)

    def add(self, key: Hashable, produced_by: tuple[tuple[str, int], ...]) -> None:
        """Records that the entry under ``key`` depends on each model in ``produced_by``."""
        for name, _ in produced_by:
            self._keys.setdefault(name, set()).add(key)

    def discard(self, key: Hashable, produced_by: tuple[tuple[str, int], ...]) -> None:
        """Forgets a removed entry."""
        for name, _ in produced_by:
            keys = self._keys.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[name]

    def keys_of(self, model_name: str) -> list[Hashable]:
        """The keys of the entries ``model_name`` (any version) produced."""
        return list(self._keys.get(model_name, ()))


@dataclass
class ExpiryQueue:
    """Keys by expiry time, soonest first, so that a full level drops expired entries before evicting live ones.

    Items of keys removed since are left in place and recognised by the caller as stale when they
    come up; the queue is rebuilt once stale items outnumber live entries.
    """

    _heap: list[tuple[float, Hashable]] = field(default_factory=list)

    def push(self, expires_at: float, key: Hashable) -> None:
        """Records when the entry under ``key`` expires."""
        heapq.heappush(self._heap, (expires_at, key))

    def pop_due(self, now: float) -> list[tuple[float, Hashable]]:
        """Removes and returns the items due at ``now``, stale ones included."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap))
        return due

    def compact(self, live: Iterable[tuple[float, Hashable]], live_count: int) -> None:
        """Drops stale items once they outnumber the ``live_count`` entries."""
        if len(self._heap) > 2 * live_count + 64:
            self._heap = list(live)
            heapq.heapify(self._heap)


class EntriesByModelAndExpiry:
    """Removal by model version and by expiry, shared by the exact-key and the semantic levels.

    The level keeps ``_entries`` (key -> entry with ``produced_by`` and ``expires_at``),
    ``_by_model``, ``_expiry``, ``_bytes`` and ``counters``, and defines ``_remove(key)``.
    """

    _entries: dict
    _by_model: ModelIndex
    _expiry: ExpiryQueue
    _bytes: int
    counters: LevelCounters

    @property
    def entries(self) -> int:
        """Entries held now."""
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        """Bytes held now, counted as the level counts an entry's size."""
        return self._bytes

    def _remove(self, key: Hashable) -> None:
        raise NotImplementedError

    def invalidate(self, model_name: str, model_version: int = 0) -> int:
        """Removes the entries made with ``model_name`` (only ``model_version`` when it is not 0)."""
        doomed = [
            key
            for key in self._by_model.keys_of(model_name)
            if made_by(self._entries[key].produced_by, model_name, model_version)
        ]
        for key in doomed:
            self._remove(key)
        self.counters.removals += len(doomed)
        return len(doomed)

    def _drop_expired(self, now: float) -> None:
        for expires_at, key in self._expiry.pop_due(now):
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at == expires_at:
                self._remove(key)
                self.counters.removals += 1


@dataclass
class LevelStore(EntriesByModelAndExpiry):
    """A byte-bounded key-value level; when it is full, expired entries go first, then GDSF's lowest priority."""

    max_bytes: int
    default_ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    counters: LevelCounters = field(default_factory=LevelCounters)
    _entries: dict[str, StoredEntry] = field(default_factory=dict)
    _policy: GdsfPolicy = field(default_factory=GdsfPolicy)
    _expiry: ExpiryQueue = field(default_factory=ExpiryQueue)
    _by_model: ModelIndex = field(default_factory=ModelIndex)
    _bytes: int = 0

    def get(self, key: str) -> StoredEntry | None:
        """Returns a live entry and counts the hit towards its priority, or None (an expired one is removed)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self.clock():
            self._remove(key)
            self.counters.removals += 1
            entry = None
        if entry is None:
            self.counters.misses += 1
            return None
        self._policy.touch(key)
        self.counters.hits += 1
        self.counters.compute_saved += entry.compute_cost
        return entry

    def put(
        self,
        key: str,
        value: bytes,
        *,
        produced_by: tuple[tuple[str, int], ...] = (),
        compute_cost: float = 0.0,
        ttl_seconds: float | None = None,
    ) -> int:
        """Stores an entry, replacing one under the same key; returns how many entries were evicted."""
        now = self.clock()
        ttl = ttl_seconds if ttl_seconds else self.default_ttl_seconds
        entry = StoredEntry(value, produced_by, compute_cost, now + ttl)
        size = entry.size(key)
        if size > self.max_bytes:
            raise EntryTooLarge(f"entry of {size} bytes exceeds the level's bound of {self.max_bytes} bytes")
        if key in self._entries:
            self._remove(key)
        self._drop_expired(now)
        evicted = 0
        while self._bytes + size > self.max_bytes:
            self._remove(self._policy.victim(), already_forgotten=True)
            evicted += 1
        self._entries[key] = entry
        self._bytes += size
        self._policy.admit(key, compute_cost, size)
        self._expiry.push(entry.expires_at, key)
        self._by_model.add(key, produced_by)
        self.counters.evictions += evicted
        return evicted

    def _remove(self, key: str, *, already_forgotten: bool = False) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size(key)
        if not already_forgotten:
            self._policy.forget(key)
        self._by_model.discard(key, entry.produced_by)
        self._expiry.compact(((e.expires_at, k) for k, e in self._entries.items()), len(self._entries))
