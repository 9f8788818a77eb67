"""One cache level in memory: a byte bound with least-recently-used eviction, TTLs, and removal by model version.

Pure logic, no gRPC. Not thread-safe: the cache service calls it from one asyncio event loop.
Each entry is kept whole, so a lookup sees either the old value or the new one, never a mix.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

# Bookkeeping that each entry costs beyond its key and value, so that many tiny entries still
# count against the bound.
ENTRY_OVERHEAD_BYTES = 64


class EntryTooLarge(ValueError):
    """An entry is larger than the level's whole byte bound."""


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
        return len(key.encode()) + len(self.value) + ENTRY_OVERHEAD_BYTES


@dataclass
class LevelCounters:
    """What happened at a level since it started."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    removals: int = 0
    compute_saved: float = 0.0


@dataclass
class LevelStore:
    """A byte-bounded key-value level; the least recently used entries go first when it is full."""

    max_bytes: int
    default_ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    counters: LevelCounters = field(default_factory=LevelCounters)
    _entries: OrderedDict[str, StoredEntry] = field(default_factory=OrderedDict)
    _bytes: int = 0

    @property
    def entries(self) -> int:
        """Entries held now."""
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> StoredEntry | None:
        """Returns a live entry and marks it recently used, or None (an expired one is removed)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self.clock():
            self._remove(key)
            self.counters.removals += 1
            entry = None
        if entry is None:
            self.counters.misses += 1
            return None
        self._entries.move_to_end(key)
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
        ttl = ttl_seconds if ttl_seconds else self.default_ttl_seconds
        entry = StoredEntry(value, produced_by, compute_cost, self.clock() + ttl)
        size = entry.size(key)
        if size > self.max_bytes:
            raise EntryTooLarge(f"entry of {size} bytes exceeds the level's bound of {self.max_bytes} bytes")
        if key in self._entries:
            self._remove(key)
        evicted = 0
        while self._bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            evicted += 1
        self._entries[key] = entry
        self._bytes += size
        self.counters.evictions += evicted
        return evicted

    def invalidate(self, model_name: str, model_version: int = 0) -> int:
        """Removes the entries made with ``model_name`` (only ``model_version`` when it is not 0)."""
        doomed = [
            key
            for key, entry in self._entries.items()
            if any(n == model_name and (model_version == 0 or v == model_version) for n, v in entry.produced_by)
        ]
        for key in doomed:
            self._remove(key)
        self.counters.removals += len(doomed)
        return len(doomed)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size(key)
