"""The cache service's RPC handlers: protos in, level stores, protos out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

import grpc
import numpy as np
from opentelemetry import trace

from inferscale import telemetry
from inferscale.errors import InvalidArgument, ResourceExhausted, Unavailable, grpc_errors
from inferscale.events import EventSender
from inferscale.limits import MAX_PLAN_STEPS, MAX_SEARCH_CALLS
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc, common_pb2, monitor_service_pb2
from services.cache.levels import BackendUnavailable, ExactLevel, InvalidationBroadcast, LevelSnapshot
from services.cache.semantic import MAX_DIMENSIONS, InvalidEmbedding, SemanticLevel
from services.cache.store import EntryTooLarge, StoredEntry

LOG = logging.getLogger(__name__)
MAX_KEY_BYTES = 512
# The most models one entry may name in produced_by: the router's final result names each call
# that made its answer (an adaptive search's calls at most) and the complexity analysis.
MAX_PRODUCED_BY = max(MAX_PLAN_STEPS, MAX_SEARCH_CALLS) + 1
# The longest model name produced_by may hold; Triton's model names are far shorter.
MAX_MODEL_NAME_CHARS = 256
L1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
EXACT_KEY_LEVELS = (
    common_pb2.CACHE_LEVEL_L2_INTERMEDIATE,
    common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT,
    common_pb2.CACHE_LEVEL_L4_FINAL_RESULT,
)


def _level_name(level: int) -> str:
    return common_pb2.CacheLevel.Name(level) if level in common_pb2.CacheLevel.values() else str(level)


def _checked_key(key: str, field: str) -> str:
    if not key:
        raise InvalidArgument(f"{field} must not be empty")
    # Characters first: a key of millions of characters is refused before it is encoded.
    if len(key) > MAX_KEY_BYTES or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(f"{field} is {len(key.encode())} bytes, more than the {MAX_KEY_BYTES} allowed")
    return key


def _checked_embedding(embedding: Sequence[float]) -> np.ndarray:
    """The embedding as float32, once its length is within MAX_DIMENSIONS: an oversized one costs no copy."""
    if len(embedding) > MAX_DIMENSIONS:
        raise InvalidArgument(f"embedding has {len(embedding)} values, more than the {MAX_DIMENSIONS} allowed")
    return np.asarray(embedding, dtype=np.float32)


def _checked_entry(entry: cache_service_pb2.CacheEntry, ttl_seconds: int) -> tuple[tuple[str, int], ...]:
    """Checks what a store asks to keep; returns its produced_by pairs."""
    if ttl_seconds < 0:
        raise InvalidArgument(f"ttl_seconds {ttl_seconds} must not be negative")
    if not (entry.compute_cost >= 0 and math.isfinite(entry.compute_cost)):
        raise InvalidArgument(f"entry.compute_cost {entry.compute_cost} must be a finite number >= 0")
    if len(entry.produced_by) > MAX_PRODUCED_BY:
        raise InvalidArgument(f"entry.produced_by holds {len(entry.produced_by)} models, more than the {MAX_PRODUCED_BY} allowed")
    for index, model in enumerate(entry.produced_by):
        if len(model.name) > MAX_MODEL_NAME_CHARS:
            raise InvalidArgument(
                f"entry.produced_by[{index}].name has {len(model.name)} characters, more than {MAX_MODEL_NAME_CHARS}"
            )
        if not model.name or any(ord(c) < 32 for c in model.name) or model.version < 0:
            raise InvalidArgument(f"entry.produced_by[{index}] needs a printable name and a version >= 0")
    return tuple((m.name, m.version) for m in entry.produced_by)


def _entry_proto(entry: StoredEntry) -> cache_service_pb2.CacheEntry:
    return cache_service_pb2.CacheEntry(
        value=entry.value,
        produced_by=[common_pb2.ModelRef(name=n, version=v) for n, v in entry.produced_by],
        compute_cost=entry.compute_cost,
    )


def _level_stats(level: int, s: LevelSnapshot) -> cache_service_pb2.LevelStats:
    return cache_service_pb2.LevelStats(
        level=level,
        hits=s.hits,
        misses=s.misses,
        entries=s.entries,
        bytes=s.bytes,
        max_bytes=s.max_bytes,
        evictions=s.evictions,
        removals=s.removals,
        compute_saved=s.compute_saved,
    )


class CacheService(cache_service_pb2_grpc.CacheServiceServicer):
    """Serves the exact-key levels from their backends and the semantic level from its index."""

    def __init__(
        self,
        exact_levels: dict[int, ExactLevel],
        semantic: SemanticLevel,
        *,
        default_semantic_threshold: float,
        invalidations: InvalidationBroadcast | None = None,
    ) -> None:
        self._levels = exact_levels
        self._semantic = semantic
        # Other replicas' semantic levels, when replicas share Redis; None for a lone replica.
        self._invalidations = invalidations
        self._default_threshold = default_semantic_threshold

    def _level(self, level: int, key: str) -> ExactLevel:
        if level not in self._levels:
            raise InvalidArgument(
                f"level {_level_name(level)} is not an exact-key level; use one of "
                f"{', '.join(_level_name(lv) for lv in EXACT_KEY_LEVELS)} (L1 is searched with SemanticLookup)"
            )
        _checked_key(key, "key")
        trace.get_current_span().set_attribute(telemetry.ATTR_CACHE_LEVEL, _level_name(level))
        return self._levels[level]

    @grpc_errors
    async def Lookup(
        self, request: cache_service_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.LookupResponse:
        level = self._level(request.level, request.key)
        try:
            entry = await level.get(request.key)
        except BackendUnavailable as error:
            raise Unavailable(str(error)) from None
        trace.get_current_span().set_attribute(telemetry.ATTR_CACHE_HIT, entry is not None)
        if entry is None:
            return cache_service_pb2.LookupResponse(hit=False)
        return cache_service_pb2.LookupResponse(hit=True, entry=_entry_proto(entry))

    @grpc_errors
    async def Store(
        self, request: cache_service_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.StoreResponse:
        level = self._level(request.level, request.key)
        produced_by = _checked_entry(request.entry, request.ttl_seconds)
        try:
            evicted = await level.put(
                request.key,
                request.entry.value,
                produced_by=produced_by,
                compute_cost=request.entry.compute_cost,
                ttl_seconds=request.ttl_seconds or None,
            )
        except EntryTooLarge as error:
            raise ResourceExhausted(str(error)) from None
        except BackendUnavailable as error:
            raise Unavailable(str(error)) from None
        return cache_service_pb2.StoreResponse(evicted=evicted)

    @grpc_errors
    async def SemanticLookup(
        self, request: cache_service_pb2.SemanticLookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.SemanticLookupResponse:
        namespace = _checked_key(request.namespace, "namespace")
        threshold = request.similarity_threshold
        if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
            raise InvalidArgument(f"similarity_threshold {threshold} is outside [0, 1] (0 means the default)")
        threshold = threshold or self._default_threshold
        span = trace.get_current_span()
        span.set_attribute(telemetry.ATTR_CACHE_LEVEL, _level_name(L1))
        try:
            hit = self._semantic.lookup(namespace, _checked_embedding(request.embedding), threshold)
        except InvalidEmbedding as error:
            raise InvalidArgument(f"embedding: {error}") from None
        span.set_attribute(telemetry.ATTR_CACHE_HIT, hit is not None)
        if hit is None:
            return cache_service_pb2.SemanticLookupResponse(hit=False, similarity_threshold=threshold)
        e = hit.entry
        return cache_service_pb2.SemanticLookupResponse(
            hit=True,
            entry=_entry_proto(StoredEntry(e.value, e.produced_by, e.compute_cost, e.expires_at)),
            similarity=hit.similarity,
            similarity_threshold=threshold,
        )

    @grpc_errors
    async def SemanticStore(
        self, request: cache_service_pb2.SemanticStoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.SemanticStoreResponse:
        namespace = _checked_key(request.namespace, "namespace")
        produced_by = _checked_entry(request.entry, request.ttl_seconds)
        trace.get_current_span().set_attribute(telemetry.ATTR_CACHE_LEVEL, _level_name(L1))
        try:
            evicted = self._semantic.store(
                namespace,
                _checked_embedding(request.embedding),
                request.entry.value,
                produced_by=produced_by,
                compute_cost=request.entry.compute_cost,
                ttl_seconds=request.ttl_seconds or None,
            )
        except InvalidEmbedding as error:
            raise InvalidArgument(f"embedding: {error}") from None
        except EntryTooLarge as error:
            raise ResourceExhausted(str(error)) from None
        return cache_service_pb2.SemanticStoreResponse(evicted=evicted)

    @grpc_errors
    async def Invalidate(
        self, request: cache_service_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.InvalidateResponse:
        if not request.model_name:
            raise InvalidArgument("model_name must not be empty")
        if request.model_version < 0:
            raise InvalidArgument(f"model_version {request.model_version} must not be negative")
        removed = self._semantic.invalidate(request.model_name, request.model_version)
        try:
            for level in self._levels.values():
                removed += await level.invalidate(request.model_name, request.model_version)
            if self._invalidations is not None:
                removed += await self._invalidations.invalidate(request.model_name, request.model_version)
        except BackendUnavailable as error:
            raise Unavailable(str(error)) from None
        return cache_service_pb2.InvalidateResponse(removed=removed)

    async def level_stats(self) -> list[cache_service_pb2.LevelStats]:
        """Every level's statistics, L1 first; raises BackendUnavailable when the shared backend fails."""
        s = self._semantic
        c = s.counters
        stats = [
            _level_stats(
                L1,
                LevelSnapshot(c.hits, c.misses, s.entries, s.bytes_used, s.max_bytes, c.evictions, c.removals, c.compute_saved),
            )
        ]
        for level, backend in self._levels.items():
            stats.append(_level_stats(level, await backend.snapshot()))
        return stats

    @grpc_errors
    async def GetCacheStats(
        self, request: cache_service_pb2.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.GetCacheStatsResponse:
        try:
            return cache_service_pb2.GetCacheStatsResponse(levels=await self.level_stats())
        except BackendUnavailable as error:
            raise Unavailable(str(error)) from None


async def report_stats(service: CacheService, events: EventSender, replica: str, interval_seconds: float) -> None:
    """Sends the levels' statistics to the monitor every ``interval_seconds``, when they changed, until cancelled."""
    last_sent: list[cache_service_pb2.LevelStats] = []
    while True:
        await asyncio.sleep(interval_seconds)
        with contextlib.suppress(BackendUnavailable):
            levels = await service.level_stats()
            if levels != last_sent:
                events.emit(
                    monitor_service_pb2.Event(cache_stats=monitor_service_pb2.CacheStatsEvent(replica=replica, levels=levels))
                )
                last_sent = levels
