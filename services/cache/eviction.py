"""Greedy-Dual-Size-Frequency (GDSF) eviction: which entry goes when a level is full.

Cherkasova, "Improving WWW Proxies Performance with Greedy-Dual-Size-Frequency Caching Policy"
(HP Labs, 1998). Each entry's priority is ``clock + frequency * cost / size``: an entry that is
used often, saves much compute and takes little room stays; the lowest priority goes first. The
clock rises to the priority of each evicted entry, so an entry that was popular long ago ages out
behind entries used since (recency) without any entry's priority being rewritten.

Pure logic, no gRPC, no storage: the level stores tell it about their keys and ask it for victims.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field

# An entry that saves no measured compute (an embedding, a zero-cost step) still ranks by
# frequency and size rather than all tying at the clock.
MIN_COST = 1e-3
# Stale heap items tolerated beyond one per live key before the heap is rebuilt: spares a tiny
# level a rebuild on nearly every hit.
STALE_SLACK = 64


def gdsf_priority(clock: float, frequency: int, cost: float, size: int) -> float:
    """The GDSF priority of an entry: higher stays longer."""
    return clock + frequency * max(cost, MIN_COST) / max(size, 1)


@dataclass
class _Tracked:
    frequency: int
    cost: float
    size: int
    priority: float
    # Bumped on every change so that older heap items for the key are recognised as stale.
    generation: int


@dataclass
class GdsfPolicy:
    """Keeps every key's GDSF priority and yields the lowest-priority key on demand.

    A heap with lazy deletion: a hit pushes a new item instead of re-sorting, and stale items are
    skipped when popped. The heap is rebuilt from the live keys whenever stale items outnumber
    them (past a small slack), on a hit as on a removal: a level whose few entries are hit
    millions of times holds a heap proportional to its entries, not to its hits. A rebuild costs
    one item per live key and comes at most once per as many pushes, so a hit stays O(log n)
    amortized; rebuilding keeps each key's (priority, generation) item, so the order of victims
    is the same.
    """

    clock: float = 0.0
    _tracked: dict[Hashable, _Tracked] = field(default_factory=dict)
    _heap: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _generation: int = 0

    def __len__(self) -> int:
        return len(self._tracked)

    def admit(self, key: Hashable, cost: float, size: int) -> None:
        """Starts tracking a newly stored key (a replaced key starts over at frequency 1)."""
        self._push(key, _Tracked(1, cost, size, 0.0, 0))

    def touch(self, key: Hashable) -> None:
        """Records a hit on ``key``."""
        tracked = self._tracked[key]
        tracked.frequency += 1
        self._push(key, tracked)

    def forget(self, key: Hashable) -> None:
        """Stops tracking a key removed for another reason (expiry, invalidation, replacement)."""
        self._tracked.pop(key, None)
        self._compact()

    def victim(self) -> Hashable:
        """Removes and returns the key with the lowest priority, advancing the clock to it."""
        while self._heap:
            priority, generation, key = heapq.heappop(self._heap)
            tracked = self._tracked.get(key)
            if tracked is not None and tracked.generation == generation:
                del self._tracked[key]
                self.clock = priority
                return key
        raise LookupError("no entry to evict")

    def priority(self, key: Hashable) -> float:
        """The key's current priority (for tests and statistics)."""
        return self._tracked[key].priority

    def _push(self, key: Hashable, tracked: _Tracked) -> None:
        self._generation += 1
        tracked.generation = self._generation
        tracked.priority = gdsf_priority(self.clock, tracked.frequency, tracked.cost, tracked.size)
        self._tracked[key] = tracked
        heapq.heappush(self._heap, (tracked.priority, tracked.generation, key))
        self._compact()

    def _compact(self) -> None:
        """Drops the stale items once they outnumber the live ones by more than the slack."""
        if len(self._heap) > 2 * len(self._tracked) + STALE_SLACK:
            self._heap = [(t.priority, t.generation, key) for key, t in self._tracked.items()]
            heapq.heapify(self._heap)
