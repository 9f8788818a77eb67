"""The cache service as a real process: every level, GDSF eviction, invalidation, bad input, and the Redis backend."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from inferscale.suite import Suite, SuitePorts
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc, common_pb2
from services.cache.store import ENTRY_OVERHEAD_BYTES
from tests.conftest import system_binary
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

L1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
L2 = common_pb2.CACHE_LEVEL_L2_INTERMEDIATE
L3 = common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT
L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
SMALL_LEVEL_BYTES = 4096


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(system_binary("redis-server"), tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def start_cache(log_dir: pathlib.Path, env: dict[str, str]) -> Suite:
    """One cache process on a free port, with no Triton and no monitor."""
    suite = Suite(
        ports=SuitePorts.free(),
        triton_url="unused",
        log_dir=log_dir,
        env={"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_MONITOR_ADDRESS": "off", **env},
    )
    suite.start_service("cache")
    return suite


@pytest.fixture(scope="module", params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if request.param == "memory":
        return {"INFERSCALE_CACHE_BACKEND": "memory"}
    redis_server = request.getfixturevalue("redis_server")
    prefix = f"test{time.monotonic_ns()}:"
    return {"INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis_server.url, "INFERSCALE_CACHE_REDIS_PREFIX": prefix}


@pytest.fixture(scope="module")
def small_cache(backend: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[cache_service_pb2_grpc.CacheServiceStub]:
    suite = start_cache(tmp_path_factory.mktemp("cache-logs"), {**backend, "INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL": str(SMALL_LEVEL_BYTES)})
    # The admin token opens every cache call, Invalidate included.
    channel = suite.channel("cache", role="admin")
    yield cache_service_pb2_grpc.CacheServiceStub(channel)
    channel.close()
    suite.stop()


def entry(value: bytes, cost: float = 1.0, *models: tuple[str, int]) -> cache_service_pb2.CacheEntry:
    return cache_service_pb2.CacheEntry(
        value=value, compute_cost=cost, produced_by=[common_pb2.ModelRef(name=n, version=v) for n, v in models]
    )


def store(cache, level: int, key: str, value: bytes, cost: float = 1.0, *models: tuple[str, int]) -> int:
    return cache.Store(cache_service_pb2.StoreRequest(level=level, key=key, entry=entry(value, cost, *models)), timeout=5).evicted


def lookup(cache, level: int, key: str) -> cache_service_pb2.LookupResponse:
    return cache.Lookup(cache_service_pb2.LookupRequest(level=level, key=key), timeout=5)


def stats(cache) -> dict[int, cache_service_pb2.LevelStats]:
    return {s.level: s for s in cache.GetCacheStats(cache_service_pb2.GetCacheStatsRequest(), timeout=5).levels}


@pytest.mark.parametrize("level", [L2, L3, L4])
def test_each_exact_level_stores_and_serves_an_entry_whole(small_cache, level: int) -> None:
    key = f"whole-{level}"
    before = stats(small_cache)[level]
    store(small_cache, level, key, b"value", 2.5, ("m", 3))
    found = lookup(small_cache, level, key)
    assert found.hit and found.entry.value == b"value" and found.entry.compute_cost == 2.5
    assert [(m.name, m.version) for m in found.entry.produced_by] == [("m", 3)]
    assert not lookup(small_cache, level, key + "-other").hit
    after = stats(small_cache)[level]
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    assert after.compute_saved - before.compute_saved == pytest.approx(2.5)


def test_a_full_level_evicts_by_gdsf_and_stays_within_its_bound(small_cache) -> None:
    value = b"x" * 1200
    size = len("evict-a") + len(value) + ENTRY_OVERHEAD_BYTES
    assert 3 * size <= SMALL_LEVEL_BYTES < 4 * size
    for key in ("evict-a", "evict-b", "evict-c"):
        store(small_cache, L2, key, value, {"evict-a": 22.0}.get(key, 1.0))
    lookup(small_cache, L2, "evict-c")
    assert store(small_cache, L2, "evict-d", value, 1.0) >= 1
    # b saves little compute and was never used again: it goes; a (costly) and c (used) stay.
    assert not lookup(small_cache, L2, "evict-b").hit
    assert lookup(small_cache, L2, "evict-a").hit and lookup(small_cache, L2, "evict-c").hit
    level = stats(small_cache)[L2]
    assert level.bytes <= level.max_bytes == SMALL_LEVEL_BYTES and level.evictions >= 1


def test_invalidation_removes_one_model_versions_entries_at_every_level(small_cache) -> None:
    store(small_cache, L3, "inv-old", b"a", 1.0, ("vmodel", 1))
    store(small_cache, L4, "inv-built-on-old", b"b", 1.0, ("cheap", 1), ("vmodel", 1))
    store(small_cache, L3, "inv-new", b"c", 1.0, ("vmodel", 2))
    embedding = np.ones(8, np.float32)
    small_cache.SemanticStore(
        cache_service_pb2.SemanticStoreRequest(namespace="inv", embedding=embedding, entry=entry(b"s", 1.0, ("vmodel", 1))),
        timeout=5,
    )
    removed = small_cache.Invalidate(cache_service_pb2.InvalidateRequest(model_name="vmodel", model_version=1), timeout=5)
    assert removed.removed == 3
    assert not lookup(small_cache, L3, "inv-old").hit and not lookup(small_cache, L4, "inv-built-on-old").hit
    assert lookup(small_cache, L3, "inv-new").hit
    assert not small_cache.SemanticLookup(
        cache_service_pb2.SemanticLookupRequest(namespace="inv", embedding=embedding), timeout=5
    ).hit


def test_the_models_an_entry_names_count_in_the_level_bytes_on_every_backend(small_cache) -> None:
    names = [(letter * 256, 1) for letter in "pqr"]
    store(small_cache, L3, "named", b"v", 1.0, *names)
    before = stats(small_cache)[L3].bytes
    assert small_cache.Invalidate(cache_service_pb2.InvalidateRequest(model_name="p" * 256), timeout=5).removed == 1
    freed = before - stats(small_cache)[L3].bytes
    assert freed >= len("named") + len(b"v") + ENTRY_OVERHEAD_BYTES + 3 * 256


@pytest.mark.parametrize(
    ("call", "code", "named"),
    [
        (lambda c: c.Lookup(cache_service_pb2.LookupRequest(level=L4, key=""), timeout=5), "INVALID_ARGUMENT", "key must not be empty"),
        (lambda c: c.Lookup(cache_service_pb2.LookupRequest(level=L1, key="k"), timeout=5), "INVALID_ARGUMENT", "SemanticLookup"),
        (lambda c: c.Lookup(cache_service_pb2.LookupRequest(level=L4, key="k" * 600), timeout=5), "INVALID_ARGUMENT", "600 bytes"),
        (lambda c: c.Store(cache_service_pb2.StoreRequest(level=L4, key="k", entry=entry(b"v", float("nan"))), timeout=5), "INVALID_ARGUMENT", "compute_cost"),
        (lambda c: c.Store(cache_service_pb2.StoreRequest(level=L4, key="k", entry=entry(b"v", 1.0, ("bad\x1ename", 1))), timeout=5), "INVALID_ARGUMENT", "produced_by[0]"),
        (lambda c: c.Store(cache_service_pb2.StoreRequest(level=L4, key="k", entry=entry(b"v"), ttl_seconds=-1), timeout=5), "INVALID_ARGUMENT", "ttl_seconds"),
        (lambda c: c.Store(cache_service_pb2.StoreRequest(level=L4, key="k", entry=entry(b"v" * 5000)), timeout=5), "RESOURCE_EXHAUSTED", "exceeds the level's bound"),
        (lambda c: c.SemanticLookup(cache_service_pb2.SemanticLookupRequest(namespace="n", embedding=[0.0, 0.0]), timeout=5), "INVALID_ARGUMENT", "all zeros"),
        (lambda c: c.SemanticLookup(cache_service_pb2.SemanticLookupRequest(namespace="n", embedding=[1.0], similarity_threshold=2), timeout=5), "INVALID_ARGUMENT", "similarity_threshold"),
        (lambda c: c.SemanticStore(cache_service_pb2.SemanticStoreRequest(namespace="n", embedding=[float("inf")], entry=entry(b"v")), timeout=5), "INVALID_ARGUMENT", "NaN or infinite"),
        (lambda c: c.Invalidate(cache_service_pb2.InvalidateRequest(model_name=""), timeout=5), "INVALID_ARGUMENT", "model_name"),
    ],
)
def test_bad_input_gets_a_clear_status_and_keeps_what_is_stored(small_cache, call, code: str, named: str) -> None:
    store(small_cache, L4, "survivor", b"kept")
    with pytest.raises(grpc.RpcError) as raised:
        call(small_cache)
    assert raised.value.code().name == code
    assert named in raised.value.details()
    assert lookup(small_cache, L4, "survivor").entry.value == b"kept"


def test_the_semantic_level_serves_the_nearest_neighbour_above_the_threshold(small_cache) -> None:
    rng = np.random.default_rng(3)
    anchor = rng.standard_normal(64).astype(np.float32)
    far = rng.standard_normal(64).astype(np.float32)
    request = cache_service_pb2.SemanticStoreRequest(namespace="sem", embedding=anchor, entry=entry(b"anchor", 4.0))
    small_cache.SemanticStore(request, timeout=5)
    near = anchor + 0.05 * rng.standard_normal(64).astype(np.float32)
    hit = small_cache.SemanticLookup(cache_service_pb2.SemanticLookupRequest(namespace="sem", embedding=near), timeout=5)
    assert hit.hit and hit.entry.value == b"anchor" and hit.similarity > 0.99
    assert hit.similarity_threshold == pytest.approx(0.85)
    miss = small_cache.SemanticLookup(cache_service_pb2.SemanticLookupRequest(namespace="sem", embedding=far), timeout=5)
    strict = small_cache.SemanticLookup(
        cache_service_pb2.SemanticLookupRequest(namespace="sem", embedding=near, similarity_threshold=0.99999), timeout=5
    )
    assert not miss.hit and not strict.hit
    assert stats(small_cache)[L1].hits >= 1


def test_concurrent_stores_and_lookups_never_see_a_torn_entry(backend: dict[str, str], tmp_path_factory) -> None:
    suite = start_cache(tmp_path_factory.mktemp("torn-logs"), backend)

    def value(writer: int, round_: int) -> bytes:
        body = f"{writer}:{round_}:".encode() * 200
        return hashlib.sha256(body).digest() + body

    async def run() -> int:
        checked = 0
        async with suite.aio_channel("cache") as channel:
            cache = cache_service_pb2_grpc.CacheServiceStub(channel)

            async def writer(index: int) -> None:
                for round_ in range(40):
                    await cache.Store(
                        cache_service_pb2.StoreRequest(level=L4, key="contended", entry=entry(value(index, round_))), timeout=5
                    )

            async def reader() -> None:
                nonlocal checked
                for _ in range(80):
                    found = await cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key="contended"), timeout=5)
                    if found.hit:
                        digest, body = found.entry.value[:32], found.entry.value[32:]
                        assert hashlib.sha256(body).digest() == digest, "a lookup saw a torn entry"
                        checked += 1

            await asyncio.gather(*(writer(i) for i in range(4)), *(reader() for _ in range(4)))
        return checked

    try:
        assert asyncio.run(run()) > 0
    finally:
        suite.stop()


def test_two_cache_replicas_on_redis_share_entries(redis_server: RedisServer, tmp_path_factory) -> None:
    env = {"INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis_server.url, "INFERSCALE_CACHE_REDIS_PREFIX": "shared:"}
    first = start_cache(tmp_path_factory.mktemp("replica-a"), env)
    second = start_cache(tmp_path_factory.mktemp("replica-b"), env)
    try:
        with first.channel("cache") as a, second.channel("cache") as b:
            store(cache_service_pb2_grpc.CacheServiceStub(a), L4, "shared-key", b"from A", 3.0, ("m", 1))
            found = lookup(cache_service_pb2_grpc.CacheServiceStub(b), L4, "shared-key")
            assert found.hit and found.entry.value == b"from A"
            cache_service_pb2_grpc.CacheServiceStub(b).Invalidate(
                cache_service_pb2.InvalidateRequest(model_name="m", model_version=1), timeout=5, metadata=second.metadata("admin")
            )
            assert not lookup(cache_service_pb2_grpc.CacheServiceStub(a), L4, "shared-key").hit
    finally:
        first.stop()
        second.stop()


def test_an_invalidation_on_one_replica_empties_the_semantic_level_of_another(redis_server: RedisServer, tmp_path_factory) -> None:
    env = {"INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis_server.url, "INFERSCALE_CACHE_REDIS_PREFIX": "broadcast:"}
    first = start_cache(tmp_path_factory.mktemp("broadcast-a"), env)
    second = start_cache(tmp_path_factory.mktemp("broadcast-b"), env)
    old_version, new_version = np.ones(8, np.float32), np.arange(1, 9, dtype=np.float32)
    try:
        with first.channel("cache") as a, second.channel("cache") as b:
            replica_a, replica_b = cache_service_pb2_grpc.CacheServiceStub(a), cache_service_pb2_grpc.CacheServiceStub(b)
            for embedding, version in ((old_version, 1), (new_version, 2)):
                replica_b.SemanticStore(
                    cache_service_pb2.SemanticStoreRequest(namespace="broadcast", embedding=embedding, entry=entry(b"B", 1.0, ("m", version))),
                    timeout=5,
                )

            def served_by_b(embedding: np.ndarray) -> bool:
                request = cache_service_pb2.SemanticLookupRequest(namespace="broadcast", embedding=embedding, similarity_threshold=0.999)
                return replica_b.SemanticLookup(request, timeout=5).hit

            assert served_by_b(old_version) and served_by_b(new_version)
            # The semantic level lives in B's process: A does not hold the entries it is asked to drop.
            assert not replica_a.SemanticLookup(
                cache_service_pb2.SemanticLookupRequest(namespace="broadcast", embedding=old_version), timeout=5
            ).hit
            removed = replica_a.Invalidate(
                cache_service_pb2.InvalidateRequest(model_name="m", model_version=1), timeout=5, metadata=first.metadata("admin")
            )
            assert removed.removed == 1
            assert not served_by_b(old_version)
            assert served_by_b(new_version)
    finally:
        first.stop()
        second.stop()


def test_a_dead_redis_fails_calls_fast_with_unavailable_and_the_cache_recovers(tmp_path_factory) -> None:
    redis_server = RedisServer(system_binary("redis-server"), tmp_path_factory.mktemp("dying-redis")).start()
    suite = start_cache(
        tmp_path_factory.mktemp("dying-logs"),
        {"INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis_server.url, "INFERSCALE_CACHE_REDIS_TIMEOUT_SECONDS": "0.2"},
    )
    try:
        with suite.channel("cache") as channel:
            cache = cache_service_pb2_grpc.CacheServiceStub(channel)
            store(cache, L4, "before", b"v")
            redis_server.kill()
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as raised:
                lookup(cache, L4, "before")
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "redis" in raised.value.details()
            assert time.monotonic() - started < 2.0, "a Redis call outlived its timeout"
            # The semantic level lives in the cache process and still answers.
            cache.SemanticStore(
                cache_service_pb2.SemanticStoreRequest(namespace="n", embedding=[1.0, 2.0], entry=entry(b"s")), timeout=5
            )
            redis_server.start()
            store(cache, L4, "after", b"v2")
            assert lookup(cache, L4, "after").entry.value == b"v2"
    finally:
        suite.stop()
        redis_server.stop()
