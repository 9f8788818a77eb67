"""The cache service's RPC handlers: protos in, level stores, protos out."""

from __future__ import annotations

import grpc
from opentelemetry import trace

from inferscale import telemetry
from inferscale.errors import InvalidArgument, ResourceExhausted, grpc_errors
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc, common_pb2
from services.cache.store import EntryTooLarge, LevelStore

MAX_KEY_BYTES = 512
LEVELS = (
    common_pb2.CACHE_LEVEL_L1_SEMANTIC,
    common_pb2.CACHE_LEVEL_L2_INTERMEDIATE,
    common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT,
    common_pb2.CACHE_LEVEL_L4_FINAL_RESULT,
)
# L1 answers by similarity, not by key; its index arrives with the semantic level.
EXACT_KEY_LEVELS = LEVELS[1:]


class CacheService(cache_service_pb2_grpc.CacheServiceServicer):
    """Serves the exact-key levels from in-process stores."""

    def __init__(self, max_bytes_per_level: int, default_ttl_seconds: float) -> None:
        self._levels = {
            level: LevelStore(max_bytes=max_bytes_per_level, default_ttl_seconds=default_ttl_seconds)
            for level in EXACT_KEY_LEVELS
        }

    def _level(self, level: int, key: str) -> LevelStore:
        if level not in self._levels:
            raise InvalidArgument(
                f"level {common_pb2.CacheLevel.Name(level) if level in common_pb2.CacheLevel.values() else level} "
                f"is not an exact-key level; use one of "
                f"{', '.join(common_pb2.CacheLevel.Name(lv) for lv in EXACT_KEY_LEVELS)}"
            )
        if not key:
            raise InvalidArgument("key must not be empty")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(f"key is {len(key.encode())} bytes, more than the {MAX_KEY_BYTES} allowed")
        trace.get_current_span().set_attribute(telemetry.ATTR_CACHE_LEVEL, common_pb2.CacheLevel.Name(level))
        return self._levels[level]

    @grpc_errors
    async def Lookup(
        self, request: cache_service_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.LookupResponse:
        entry = self._level(request.level, request.key).get(request.key)
        trace.get_current_span().set_attribute(telemetry.ATTR_CACHE_HIT, entry is not None)
        if entry is None:
            return cache_service_pb2.LookupResponse(hit=False)
        return cache_service_pb2.LookupResponse(
            hit=True,
            entry=cache_service_pb2.CacheEntry(
                value=entry.value,
                produced_by=[common_pb2.ModelRef(name=n, version=v) for n, v in entry.produced_by],
                compute_cost=entry.compute_cost,
            ),
        )

    @grpc_errors
    async def Store(
        self, request: cache_service_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.StoreResponse:
        store = self._level(request.level, request.key)
        if request.ttl_seconds < 0:
            raise InvalidArgument(f"ttl_seconds {request.ttl_seconds} must not be negative")
        if request.entry.compute_cost < 0:
            raise InvalidArgument(f"entry.compute_cost {request.entry.compute_cost} must not be negative")
        try:
            evicted = store.put(
                request.key,
                request.entry.value,
                produced_by=tuple((m.name, m.version) for m in request.entry.produced_by),
                compute_cost=request.entry.compute_cost,
                ttl_seconds=request.ttl_seconds or None,
            )
        except EntryTooLarge as error:
            raise ResourceExhausted(str(error)) from None
        return cache_service_pb2.StoreResponse(evicted=evicted)

    @grpc_errors
    async def Invalidate(
        self, request: cache_service_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.InvalidateResponse:
        if not request.model_name:
            raise InvalidArgument("model_name must not be empty")
        if request.model_version < 0:
            raise InvalidArgument(f"model_version {request.model_version} must not be negative")
        removed = sum(store.invalidate(request.model_name, request.model_version) for store in self._levels.values())
        return cache_service_pb2.InvalidateResponse(removed=removed)

    @grpc_errors
    async def GetCacheStats(
        self, request: cache_service_pb2.GetCacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_service_pb2.GetCacheStatsResponse:
        return cache_service_pb2.GetCacheStatsResponse(
            levels=[
                cache_service_pb2.LevelStats(
                    level=level,
                    hits=store.counters.hits,
                    misses=store.counters.misses,
                    entries=store.entries,
                    bytes=store.bytes_used,
                    max_bytes=store.max_bytes,
                    evictions=store.counters.evictions,
                    removals=store.counters.removals,
                    compute_saved=store.counters.compute_saved,
                )
                for level, store in self._levels.items()
            ]
        )
