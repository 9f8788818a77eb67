"""The orchestrator's use of the cache: per-model outputs (L3) and embeddings (L2).

A cache that is slow, down or holding an unreadable entry costs a recomputation, never a request:
every failure here is a miss. The calls go through inferscale.cache_client: a cache that does not
answer is skipped at once until a probe finds it back, and stores go out in the background, off the
request's path, a bounded number at a time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from inferscale.cache_client import CacheClient
from inferscale.events import EventSender
from inferscale.tensors import tensors_digest_parts
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
)

LOG = logging.getLogger(__name__)
L2 = common_pb2.CACHE_LEVEL_L2_INTERMEDIATE
L3 = common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT


def model_output_key(level: int, model_name: str, model_version: int, inputs: Sequence[common_pb2.InferTensor]) -> str:
    """The key of one model version's output for these exact inputs: a SHA-256 digest."""
    digest = hashlib.sha256(f"inferscale.v1.model_output|{level}|{model_name}|{model_version}|".encode())
    for part in tensors_digest_parts(inputs):
        digest.update(part)
    return digest.hexdigest()


class ModelOutputCache:
    """Looks up and stores model outputs in the cache service, at L3 for task models and L2 for embeddings."""

    def __init__(
        self,
        cache: cache_service_pb2_grpc.CacheServiceStub | None,
        events: EventSender,
        *,
        timeout_seconds: float,
        min_cost: float,
    ) -> None:
        self._cache = CacheClient(cache, timeout_seconds=timeout_seconds) if cache is not None else None
        self._events = events
        self._min_cost = min_cost

    def worth_caching(self, cost: float, level: int) -> bool:
        """Whether a call is worth a cache round trip: embeddings always, task models from ``min_cost`` up.

        A model cheaper than that answers about as fast as the cache would, so looking it up
        only adds a hop to every miss.
        """
        return self._cache is not None and (level == L2 or cost >= self._min_cost)

    async def lookup(self, level: int, key: str, request_id: str, model: common_pb2.ModelRef) -> orchestrator_service_pb2.CachedModelOutput | None:
        """Returns the outputs ``model`` (this exact version) produced for the key, or None."""
        assert self._cache is not None
        reply = await self._cache.lookup(cache_service_pb2.LookupRequest(level=level, key=key))
        if reply is None:
            return None
        found = None
        if reply.hit:
            cached = orchestrator_service_pb2.CachedModelOutput()
            try:
                cached.ParseFromString(reply.entry.value)
            except Exception:  # noqa: BLE001 - an unreadable entry is a miss, never a failed request
                LOG.warning("cache entry %s does not parse; treating it as a miss", key)
            else:
                if cached.model.name == model.name and cached.model.version == model.version:
                    found = cached
        self._events.emit(
            monitor_service_pb2.Event(request_id=request_id, cache=monitor_service_pb2.CacheEvent(level=level, hit=found is not None))
        )
        return found

    def store(self, level: int, key: str, output: orchestrator_service_pb2.CachedModelOutput, cost: float) -> None:
        """Stores a model's outputs in the background."""
        assert self._cache is not None
        entry = cache_service_pb2.CacheEntry(value=output.SerializeToString(), produced_by=[output.model], compute_cost=cost)
        self._cache.store(cache_service_pb2.StoreRequest(level=level, key=key, entry=entry))

    async def close(self) -> None:
        """Waits a moment for the stores still in flight (see CacheClient.close)."""
        if self._cache is not None:
            await self._cache.close()
