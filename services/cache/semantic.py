"""The semantic level (L1): answers whose request embedding lies close enough to a new request's.

One approximate-nearest-neighbour index (usearch's HNSW, cosine) per namespace; a namespace is a
task and the model versions that may answer it, so that a neighbour is never served across tasks
or model sets. The same byte bound, GDSF eviction, TTLs and invalidation by model version as the
exact-key levels.

Pure logic, no gRPC. Not thread-safe: the cache service calls it from one asyncio event loop.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from usearch.index import Index

from services.cache.eviction import GdsfPolicy
from services.cache.store import (
    ENTRY_OVERHEAD_BYTES,
    EntriesByModelAndExpiry,
    EntryTooLarge,
    ExpiryQueue,
    LevelCounters,
    ModelIndex,
    produced_by_bytes,
)

MAX_DIMENSIONS = 4096
# HNSW graph links per vector: usearch's default connectivity, two levels' worth of 4-byte ids.
CONNECTIVITY = 16
GRAPH_BYTES_PER_VECTOR = 2 * CONNECTIVITY * 4
# Candidates a lookup examines. At a million 384-dimension vectors (benchmarks/cache_levels.py's
# data) recall@1 against exact search was 0.938 at 128, 0.966 at 192, 0.972 at 256, with lookup
# p99 2.8, 3.0 and 3.7 ms on a 2-core machine; a second build of the same data gave 0.952 at 192
# (the graph, built on several threads, differs run to run). 256 keeps a margin on both targets.
EXPANSION_SEARCH = 256
EXPANSION_ADD = 64
# Neighbours fetched per lookup, so that an expired or threshold-failing nearest one does not
# hide a live one right behind it.
NEIGHBOURS_PER_LOOKUP = 4


class InvalidEmbedding(ValueError):
    """An embedding that cannot be indexed: wrong length, not finite, or all zeros."""


@dataclass(frozen=True)
class SemanticEntry:
    """A stored answer, the embedding it is found by and what it depends on."""

    namespace: str
    value: bytes
    produced_by: tuple[tuple[str, int], ...]
    compute_cost: float
    expires_at: float
    size: int


@dataclass(frozen=True)
class SemanticHit:
    """The neighbour served and how similar its embedding is to the request's, in [-1, 1]."""

    entry: SemanticEntry
    similarity: float


@dataclass
class _Namespace:
    dimensions: int
    index: Index


def normalised(embedding: np.ndarray, dimensions: int | None = None) -> np.ndarray:
    """Checks an embedding and returns it as unit-length float32; raises InvalidEmbedding naming the fault."""
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if not 1 <= vector.size <= MAX_DIMENSIONS:
        raise InvalidEmbedding(f"embedding has {vector.size} dimensions; 1 to {MAX_DIMENSIONS} are accepted")
    if dimensions is not None and vector.size != dimensions:
        raise InvalidEmbedding(f"embedding has {vector.size} dimensions but this namespace holds {dimensions}")
    if not np.all(np.isfinite(vector)):
        raise InvalidEmbedding("embedding holds NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidEmbedding("embedding is all zeros; cosine similarity is undefined for it")
    return vector / norm


@dataclass
class SemanticLevel(EntriesByModelAndExpiry):
    """Namespaced nearest-neighbour indexes under one byte bound."""

    max_bytes: int
    default_ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    counters: LevelCounters = field(default_factory=LevelCounters)
    _namespaces: dict[str, _Namespace] = field(default_factory=dict)
    _entries: dict[int, SemanticEntry] = field(default_factory=dict)
    _policy: GdsfPolicy = field(default_factory=GdsfPolicy)
    _expiry: ExpiryQueue = field(default_factory=ExpiryQueue)
    _by_model: ModelIndex = field(default_factory=ModelIndex)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _bytes: int = 0
    # Set while this replica may be missing invalidations that other replicas broadcast (its
    # subscription to them is down): lookups then miss rather than serve an entry that may be gone.
    suspended: bool = False

    def lookup(self, namespace: str, embedding: np.ndarray, threshold: float) -> SemanticHit | None:
        """Returns the nearest live entry whose cosine similarity reaches ``threshold``, or None."""
        space = self._namespaces.get(namespace)
        # Checked even where nothing can match, so that a malformed query is refused the same way.
        vector = normalised(embedding, space.dimensions if space is not None else None)
        hit = None
        if space is not None and not self.suspended:
            now = self.clock()
            matches = space.index.search(vector, min(NEIGHBOURS_PER_LOOKUP, len(space.index)))
            for key, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry.expires_at <= now:
                    self._remove(key)
                    self.counters.removals += 1
                    continue
                similarity = 1.0 - float(distance)
                if similarity >= threshold:
                    hit = SemanticHit(entry, similarity)
                    self._policy.touch(key)
                break
        if hit is None:
            self.counters.misses += 1
            return None
        self.counters.hits += 1
        self.counters.compute_saved += hit.entry.compute_cost
        return hit

    def store(
        self,
        namespace: str,
        embedding: np.ndarray,
        value: bytes,
        *,
        produced_by: tuple[tuple[str, int], ...] = (),
        compute_cost: float = 0.0,
        ttl_seconds: float | None = None,
    ) -> int:
        """Indexes an answer under its request's embedding; returns how many entries were evicted."""
        space = self._namespaces.get(namespace)
        vector = normalised(embedding, space.dimensions if space is not None else None)
        size = (
            len(namespace.encode())
            + len(value)
            + produced_by_bytes(produced_by)
            + vector.size * 4
            + GRAPH_BYTES_PER_VECTOR
            + ENTRY_OVERHEAD_BYTES
        )
        if size > self.max_bytes:
            raise EntryTooLarge(f"entry of {size} bytes exceeds the level's bound of {self.max_bytes} bytes")
        now = self.clock()
        self._drop_expired(now)
        evicted = 0
        while self._bytes + size > self.max_bytes:
            self._remove(self._policy.victim(), already_forgotten=True)  # type: ignore[arg-type]
            evicted += 1
        if space is None or namespace not in self._namespaces:
            space = _Namespace(vector.size, self._new_index(vector.size))
            self._namespaces[namespace] = space
        key = next(self._ids)
        ttl = ttl_seconds if ttl_seconds else self.default_ttl_seconds
        entry = SemanticEntry(namespace, value, produced_by, compute_cost, now + ttl, size)
        space.index.add(key, vector)
        self._entries[key] = entry
        self._bytes += size
        self._policy.admit(key, compute_cost, size)
        self._expiry.push(entry.expires_at, key)
        self._by_model.add(key, produced_by)
        self.counters.evictions += evicted
        return evicted

    def store_many(
        self,
        namespace: str,
        embeddings: np.ndarray,
        values: list[bytes],
        *,
        compute_cost: float = 0.0,
        threads: int = 0,
    ) -> None:
        """Indexes many answers at once (warming a level from a log, benchmarks), building the graph on ``threads`` threads.

        Every entry must fit: a bulk load that would overflow the byte bound is refused whole.
        """
        vectors = np.stack([normalised(e) for e in embeddings])
        space = self._namespaces.get(namespace)
        if space is not None and vectors.shape[1] != space.dimensions:
            raise InvalidEmbedding(f"embeddings have {vectors.shape[1]} dimensions but this namespace holds {space.dimensions}")
        per_vector = len(namespace.encode()) + vectors.shape[1] * 4 + GRAPH_BYTES_PER_VECTOR + ENTRY_OVERHEAD_BYTES
        sizes = [per_vector + len(value) for value in values]
        if self._bytes + sum(sizes) > self.max_bytes:
            raise EntryTooLarge(f"{len(values)} entries of {sum(sizes)} bytes exceed what the level's bound leaves free")
        if space is None:
            space = _Namespace(vectors.shape[1], self._new_index(vectors.shape[1]))
            self._namespaces[namespace] = space
        keys = np.array([next(self._ids) for _ in values], dtype=np.uint64)
        space.index.add(keys, vectors, threads=threads)
        expires_at = self.clock() + self.default_ttl_seconds
        for key, value, size in zip(keys.tolist(), values, sizes, strict=True):
            self._entries[key] = SemanticEntry(namespace, value, (), compute_cost, expires_at, size)
            self._bytes += size
            self._policy.admit(key, compute_cost, size)
            self._expiry.push(expires_at, key)

    def clear(self) -> int:
        """Removes every entry, as a replica that may have missed invalidations must; returns how many."""
        removed = len(self._entries)
        self._namespaces.clear()
        self._entries.clear()
        self._policy = GdsfPolicy()
        self._expiry = ExpiryQueue()
        self._by_model = ModelIndex()
        self._bytes = 0
        self.counters.removals += removed
        return removed

    @staticmethod
    def _new_index(dimensions: int) -> Index:
        return Index(
            ndim=dimensions,
            metric="cos",
            dtype="f16",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    def _remove(self, key: int, *, already_forgotten: bool = False) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
        if not already_forgotten:
            self._policy.forget(key)
        self._by_model.discard(key, entry.produced_by)
        space = self._namespaces[entry.namespace]
        space.index.remove(key)
        if len(space.index) == 0:
            # An empty namespace frees its index, and a later store may pick another dimension.
            del self._namespaces[entry.namespace]
        self._expiry.compact(((e.expires_at, k) for k, e in self._entries.items()), len(self._entries))
