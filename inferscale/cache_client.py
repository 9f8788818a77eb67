"""The services' calls to the cache service, made so that a cache that is down or slow costs no request.

Used by the router (final results, semantic neighbours) and the orchestrator (per-model outputs).
Every failure is a miss, never a failed request. A circuit breaker (inferscale.circuit) skips the
cache at once after it failed to answer, until a probe finds it back: while it is down, a request
pays at most one timeout. Stores go out in the background, off the reply path, a bounded number at
a time: past the bound they are dropped and counted, so that a slow cache cannot pile them up.
Failures are logged at most once per cause and interval (inferscale.throttled_log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from inferscale.circuit import CircuitBreaker
from inferscale.settings import env_float, env_int
from inferscale.throttled_log import ThrottledLog
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc

LOG = logging.getLogger(__name__)

# After the cache failed to answer, how long calls skip it before one call probes whether it is back.
RETRY_SECONDS_VARIABLE = "INFERSCALE_CACHE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 1.0
# The most stores in flight at once, per client; a store past it is dropped (and counted) instead
# of waiting on a slow cache.
MAX_PENDING_STORES_VARIABLE = "INFERSCALE_CACHE_MAX_PENDING_STORES"
DEFAULT_MAX_PENDING_STORES = 256
# How long closing waits for the stores in flight before it cancels them.
DRAIN_SECONDS = 2.0
# The statuses that say the cache did not answer (down, unreachable, too slow). Any other status is
# an answer, a refusal of this one call (an entry too large, say), and keeps the circuit closed.
OUTAGES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Reply = TypeVar("Reply")


class CacheClient:
    """Calls the cache service through a circuit breaker, with a deadline on each call and stores in the background."""

    def __init__(
        self,
        stub: cache_service_pb2_grpc.CacheServiceStub,
        *,
        timeout_seconds: float,
        breaker: CircuitBreaker | None = None,
        max_pending_stores: int | None = None,
        log: ThrottledLog | None = None,
    ) -> None:
        """Without ``breaker`` or ``max_pending_stores``, reads them from the variables above (unset: the defaults)."""
        self._stub = stub
        self._timeout = timeout_seconds
        self.breaker = breaker or CircuitBreaker(env_float(RETRY_SECONDS_VARIABLE, DEFAULT_RETRY_SECONDS, low=0.01, high=3600))
        self._max_pending = max_pending_stores or env_int(MAX_PENDING_STORES_VARIABLE, DEFAULT_MAX_PENDING_STORES, minimum=1)
        self._log = log or ThrottledLog(LOG)
        self._pending: set[asyncio.Task[Any]] = set()
        self.dropped_stores = 0

    async def lookup(self, request: cache_service_pb2.LookupRequest) -> cache_service_pb2.LookupResponse | None:
        """Looks up an exact key; None when the cache is skipped or fails."""
        return await self._call("lookup", self._stub.Lookup, request)

    async def semantic_lookup(
        self, request: cache_service_pb2.SemanticLookupRequest
    ) -> cache_service_pb2.SemanticLookupResponse | None:
        """Looks up the nearest neighbour of an embedding; None when the cache is skipped or fails."""
        return await self._call("semantic lookup", self._stub.SemanticLookup, request)

    def store(self, request: cache_service_pb2.StoreRequest) -> None:
        """Stores an entry in the background: the caller does not wait for it."""
        self._in_background("store", self._stub.Store, request)

    def semantic_store(self, request: cache_service_pb2.SemanticStoreRequest) -> None:
        """Stores an entry under an embedding in the background: the caller does not wait for it."""
        self._in_background("semantic store", self._stub.SemanticStore, request)

    async def close(self, timeout_seconds: float = DRAIN_SECONDS) -> None:
        """Waits up to ``timeout_seconds`` for the stores in flight, then cancels what is left."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            LOG.warning("%d cache stores were still in flight at close and are lost", len(late))

    def _in_background(self, what: str, method: Callable[..., Awaitable[Any]], request: Any) -> None:
        # Checked before the task exists, so that a full set costs nothing but the count.
        if len(self._pending) >= self._max_pending:
            self.dropped_stores += 1
            self._log.warning(
                ("dropped", what),
                "cache %s dropped: %d stores already wait on the cache (%d dropped in all)",
                what,
                self._max_pending,
                self.dropped_stores,
            )
            return
        task = asyncio.create_task(self._call(what, method, request))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _call(self, what: str, method: Callable[..., Awaitable[Reply]], request: Any) -> Reply | None:
        if not self.breaker.allow():
            return None
        try:
            reply = await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code not in OUTAGES:
                self._answered(what)
                self._log.warning((what, code), "cache %s refused, going on without it: %s %s", what, code.name, error.details())
            elif self.breaker.failed():
                self._log.warning(
                    (what, code, "opened"),
                    "cache %s failed (%s): skipping the cache, probing it every %g s until it answers",
                    what,
                    code.name,
                    self.breaker.retry_after_seconds,
                )
            else:
                self._log.warning((what, code), "cache %s failed again (%s): still skipping the cache", what, code.name)
            return None
        self._answered(what)
        return reply

    def _answered(self, what: str) -> None:
        if self.breaker.succeeded():
            LOG.info("cache %s answered: using the cache again", what)
