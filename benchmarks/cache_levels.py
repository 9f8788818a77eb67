"""The cache levels measured in one run: the semantic index at scale, the hit paths, and a workload's hit and false-hit rates.

    python -m benchmarks.cache_levels [--sizes 10000 100000 1000000] [--queries 500] [--requests 300]

1. L1 index: lookup p50/p99 and recall@1 against exact (brute-force) search, at each size, of
   384-dimension vectors (the length of all-MiniLM-L6-v2's embeddings). The vectors are synthetic
   but shaped like sentence embeddings: unit vectors drawn around 1 cluster centre per 50 entries;
   queries are fresh draws from the same clusters. The index is the cache's own SemanticLevel.
2. Hit paths: a Lookup that hits at L3/L4 through the cache service's gRPC API, in memory and on
   a Redis the benchmark starts, against one that misses.
3. End to end through the router: a new request (a cache miss that runs the cascade) against the
   same request repeated (a final-result hit).
4. The intents workload on the text models: new commands, exact repeats, near-duplicates
   (case, punctuation, "please") and near neighbours that need another answer ("turn on" ->
   "turn off"), at the task's shipped semantic threshold (0.98), at the common default 0.85, and
   at 0.85 with verification on. Hit rates per level, and the L1 false-hit rate: served L1
   answers that differ from what the models answer for that very text (found by also running
   every text with the cache skipped).

Prints tables, writes results/cache_levels.md and draws results/cache_levels.png.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter

import numpy as np

from benchmarks.plots import latency_cdfs
from benchmarks.router_overhead import measure
from inferscale.models.digits import load_split
from inferscale.models.intents import HELDOUT_PHRASES
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc, common_pb2, router_service_pb2, router_service_pb2_grpc
from services.cache.semantic import SemanticLevel
from tests.redis_server import RedisServer

RESULTS = REPO_ROOT / "results"
DIMENSIONS = 384
LEVEL_NAMES = {
    common_pb2.CACHE_LEVEL_UNSPECIFIED: "miss (plan ran)",
    common_pb2.CACHE_LEVEL_L1_SEMANTIC: "L1 semantic",
    common_pb2.CACHE_LEVEL_L4_FINAL_RESULT: "L4 final result",
}


def clustered_unit_vectors(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, DIMENSIONS), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def exact_nearest(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Brute-force cosine nearest neighbour of each query (all vectors are unit length)."""
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    nearest = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(data), 100_000):
        scores = queries @ data[start : start + 100_000].T
        index = scores.argmax(axis=1)
        value = scores[np.arange(len(queries)), index]
        better = value > best
        best[better] = value[better]
        nearest[better] = index[better] + start
    return nearest


def l1_index_rows(sizes: list[int], query_count: int) -> list[dict]:
    rows = []
    for size in sizes:
        rng = np.random.default_rng(size)
        centres = rng.standard_normal((max(size // 50, 1), DIMENSIONS), dtype=np.float32)
        data = clustered_unit_vectors(rng, centres, size)
        queries = clustered_unit_vectors(rng, centres, query_count)
        level = SemanticLevel(max_bytes=1 << 36, default_ttl_seconds=3600)
        print(f"  L1 index: building {size:,} entries ...", flush=True)
        started = time.perf_counter()
        level.store_many("bench", data, [str(i).encode() for i in range(size)])
        build_seconds = time.perf_counter() - started
        print(f"  L1 index: {size:,} built in {build_seconds:.0f} s; exact search for {query_count} queries ...", flush=True)
        truth = exact_nearest(data, queries)
        latencies, found = [], []
        for query in queries:
            started = time.perf_counter()
            hit = level.lookup("bench", query, threshold=-1.0)
            latencies.append((time.perf_counter() - started) * 1000)
            found.append(int(hit.entry.value) if hit else -1)
        rows.append(
            {
                "size": size,
                "p50": float(np.percentile(latencies, 50)),
                "p99": float(np.percentile(latencies, 99)),
                "recall": float(np.mean(np.array(found) == truth)),
                "build_s": build_seconds,
                "bytes": level.bytes_used,
                "latencies": np.array(latencies),
            }
        )
        del level, data
    return rows


async def hit_path_rows(caches: dict[str, Suite], requests: int) -> list[dict]:
    rows = []
    value = bytes(512)  # about a serialized three-step ExecuteResponse
    for backend, suite in caches.items():
        async with suite.aio_channel("cache") as channel:
            cache = cache_service_pb2_grpc.CacheServiceStub(channel)
            for level in (common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT, common_pb2.CACHE_LEVEL_L4_FINAL_RESULT):
                await cache.Store(
                    cache_service_pb2.StoreRequest(level=level, key="bench", entry=cache_service_pb2.CacheEntry(value=value, compute_cost=1)),
                    timeout=5,
                )
                for outcome, key in (("hit", "bench"), ("miss", "absent")):
                    request = cache_service_pb2.LookupRequest(level=level, key=key)

                    async def lookup(_: int, request: cache_service_pb2.LookupRequest = request) -> None:
                        await cache.Lookup(request, timeout=5)

                    await measure(lookup, 50, 1)
                    latencies, _ = await measure(lookup, requests, 1)
                    rows.append(
                        {
                            "what": f"{common_pb2.CacheLevel.Name(level)[12:]} {outcome}, {backend}",
                            "p50": float(np.percentile(latencies, 50)),
                            "p99": float(np.percentile(latencies, 99)),
                            "latencies": latencies,
                        }
                    )
    return rows


async def end_to_end_rows(suite: Suite, requests: int) -> list[dict]:
    _, _, images, _ = load_split()
    images = images.astype(np.float32)
    async with suite.aio_channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)

        def request(index: int, offset: float) -> router_service_pb2.InferRequest:
            # A distinct offset per run makes every "new" request an exact-key miss.
            image = images[index % len(images)] + offset
            return router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image[None, :])])

        async def new(index: int) -> None:
            await router.Infer(request(index, 0.001 * (index + 1)), timeout=30)

        repeated_request = request(0, 0.0)
        await router.Infer(repeated_request, timeout=30)

        async def repeated(_: int) -> None:
            reply = await router.Infer(repeated_request, timeout=30)
            assert reply.cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT

        rows = []
        for what, call in (("new request (miss, cascade runs)", new), ("repeated request (L4 hit)", repeated)):
            latencies, wall = await measure(call, requests, 1)
            rows.append(
                {
                    "what": what,
                    "p50": float(np.percentile(latencies, 50)),
                    "p99": float(np.percentile(latencies, 99)),
                    "latencies": latencies,
                }
            )
    return rows


OPPOSITES = [("on", "off"), ("up", "down"), ("lock", "unlock"), ("play", "stop"), ("warmer", "cooler"), ("open", "close")]


def opposite(phrase: str) -> str | None:
    """The phrase with one word swapped for its opposite, or None when it has none of those words."""
    for a, b in OPPOSITES:
        for old, new in ((a, b), (b, a)):
            swapped, count = re.subn(rf"\b{old}\b", new, phrase, count=1)
            if count:
                return swapped
    return None


def intents_workload(seed: int = 5) -> list[tuple[str, str]]:
    """(kind, text) pairs: every held-out command once, then repeats, near-duplicates and opposites, shuffled."""
    bases = [phrase for phrases in HELDOUT_PHRASES.values() for phrase in phrases]
    later: list[tuple[str, str]] = []
    for phrase in bases:
        later.append(("exact repeat", phrase))
        later.append(("near-duplicate", phrase.upper()))
        later.append(("near-duplicate", f"{phrase}!"))
        later.append(("near-duplicate", f"please {phrase}"))
        swapped = opposite(phrase)
        if swapped is not None and swapped not in bases:
            later.append(("near neighbour, other answer", swapped))
    random.Random(seed).shuffle(later)
    return [("new", phrase) for phrase in bases] + later


async def intents_rows(suite: Suite, configuration: str, workload: list[tuple[str, str]]) -> dict:
    async with suite.aio_channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)

        def request(text: str, skip_cache: bool) -> router_service_pb2.InferRequest:
            return router_service_pb2.InferRequest(task="intents", inputs=[bytes_tensor("TEXT", [text])], skip_cache=skip_cache)

        truth = {}
        for text in {t for _, t in workload}:
            truth[text] = (await router.Infer(request(text, True), timeout=30)).answer.label
        served: Counter[tuple[str, int]] = Counter()
        false_hits: Counter[str] = Counter()
        cost = 0.0
        for kind, text in workload:
            reply = await router.Infer(request(text, False), timeout=30)
            served[(kind, reply.cache_level)] += 1
            cost += reply.total_cost
            if reply.cache_level == common_pb2.CACHE_LEVEL_L1_SEMANTIC and reply.answer.label != truth[text]:
                false_hits[kind] += 1
    return {"configuration": configuration, "served": served, "false_hits": false_hits, "cost": cost, "requests": len(workload)}


def with_threshold(repository: pathlib.Path, threshold: str) -> pathlib.Path:
    config = repository / "intent_classifier" / "config.pbtxt"
    text = config.read_text()
    config.write_text(re.sub(r'(inferscale\.semantic_threshold" value: \{ string_value: ")[^"]*', rf"\g<1>{threshold}", text))
    return repository


def report(l1: list[dict], hits: list[dict], e2e: list[dict], workloads: list[dict]) -> str:
    lines = ["## L1 semantic index (usearch HNSW, f16, 384 dimensions)", ""]
    lines += ["| entries | build s | bytes held | lookup p50 ms | lookup p99 ms | recall@1 vs exact |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in l1:
        lines.append(f"| {r['size']:,} | {r['build_s']:.0f} | {r['bytes'] / 2**20:,.0f} MiB | {r['p50']:.3f} | {r['p99']:.3f} | {r['recall']:.3f} |")
    lines += ["", "## Hit paths through the cache service's Lookup RPC (concurrency 1)", ""]
    lines += ["| lookup | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
    lines += [f"| {r['what']} | {r['p50']:.3f} | {r['p99']:.3f} |" for r in hits]
    lines += ["", "## End to end through the router (digits, concurrency 1)", ""]
    lines += ["| request | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
    lines += [f"| {r['what']} | {r['p50']:.2f} | {r['p99']:.2f} |" for r in e2e]
    if len(e2e) == 2:
        lines += ["", f"A repeated request takes {e2e[1]['p50'] / e2e[0]['p50']:.2f}x a new one's latency at p50 ({e2e[1]['p99'] / e2e[0]['p99']:.2f}x at p99)."]
    lines += ["", "## Intents workload: where each request was served, and L1 false hits", ""]
    kinds = ["new", "exact repeat", "near-duplicate", "near neighbour, other answer"]
    lines += ["| configuration | request kind | requests | L4 hits | L1 hits | misses | L1 false hits |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for w in workloads:
        for kind in kinds:
            count = sum(v for (k, _), v in w["served"].items() if k == kind)
            l4 = w["served"][(kind, common_pb2.CACHE_LEVEL_L4_FINAL_RESULT)]
            l1_hits = w["served"][(kind, common_pb2.CACHE_LEVEL_L1_SEMANTIC)]
            miss = w["served"][(kind, common_pb2.CACHE_LEVEL_UNSPECIFIED)]
            lines.append(f"| {w['configuration']} | {kind} | {count} | {l4} | {l1_hits} | {miss} | {w['false_hits'][kind]} |")
    lines += ["", "| configuration | L4 hit rate | L1 hit rate | L1 false-hit rate (of L1 hits) | compute spent per request |", "| --- | ---: | ---: | ---: | ---: |"]
    for w in workloads:
        total = w["requests"]
        l4 = sum(v for (_, lv), v in w["served"].items() if lv == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT)
        l1_hits = sum(v for (_, lv), v in w["served"].items() if lv == common_pb2.CACHE_LEVEL_L1_SEMANTIC)
        false = sum(w["false_hits"].values())
        rate = f"{false / l1_hits:.3f} ({false}/{l1_hits})" if l1_hits else "no L1 hits"
        lines.append(f"| {w['configuration']} | {l4 / total:.3f} | {l1_hits / total:.3f} | {rate} | {w['cost'] / total:.1f} |")
    return "\n".join(lines)


def plot(l1: list[dict], hits: list[dict], e2e: list[dict], workloads: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    latency_cdfs(
        axes[0],
        [(f"{r['size']:,} entries (recall@1 {r['recall']:.3f})", r["latencies"]) for r in l1],
        title="L1 lookup latency",
        what="lookups",
    )
    latency_cdfs(axes[1], [(r["what"], r["latencies"]) for r in [*hits, *e2e]], title="Cache hit paths and end to end", what="calls")
    names = [w["configuration"] for w in workloads]
    l1_rates = [sum(v for (_, lv), v in w["served"].items() if lv == common_pb2.CACHE_LEVEL_L1_SEMANTIC) / w["requests"] for w in workloads]
    false_rates = [sum(w["false_hits"].values()) / w["requests"] for w in workloads]
    positions = np.arange(len(names))
    axes[2].bar(positions - 0.2, l1_rates, width=0.4, label="L1 hits / requests")
    axes[2].bar(positions + 0.2, false_rates, width=0.4, label="L1 false hits / requests")
    axes[2].set_xticks(positions, names, fontsize=8)
    axes[2].set_title("Intents workload: semantic hits and false hits")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    logs = RESULTS / "logs" / "cache_levels"
    print("1/4 the L1 index at each size", flush=True)
    l1 = l1_index_rows(args.sizes, args.queries)
    workload = intents_workload()
    workloads = []
    redis_binary = shutil.which("redis-server")
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = pathlib.Path(scratch)
        redis = RedisServer(redis_binary, scratch_path).start() if redis_binary else None
        try:
            print("2/4 hit paths, 3/4 end to end, and the workload at the shipped threshold: starting the suite ...", flush=True)
            env = {"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_SEMANTIC_AUDIT_RATE": "0"}
            with Suite(ports=SuitePorts.free(), log_dir=logs / "shipped", env=env) as suite:
                addresses = {"memory": suite}
                redis_cache = None
                if redis is not None:
                    redis_cache = Suite(
                        ports=SuitePorts.free(),
                        triton_url="unused",
                        log_dir=logs / "redis",
                        env={**env, "INFERSCALE_CACHE_BACKEND": "redis", "INFERSCALE_CACHE_REDIS_URL": redis.url, "INFERSCALE_MONITOR_ADDRESS": "off"},
                    )
                    redis_cache.start_service("cache")
                    addresses["redis"] = redis_cache
                hits = asyncio.run(hit_path_rows(addresses, args.requests * 5))
                if redis_cache is not None:
                    redis_cache.stop()
                e2e = asyncio.run(end_to_end_rows(suite, args.requests))
                print("  intents workload, threshold 0.98 (shipped) ...", flush=True)
                workloads.append(asyncio.run(intents_rows(suite, "0.98 (shipped)", workload)))
            repository = with_threshold(pathlib.Path(shutil.copytree(REPO_ROOT / "model_repository", scratch_path / "repository")), "0.85")
            print("4/4 the workload at threshold 0.85, without and with verification: starting a suite ...", flush=True)
            with Suite(model_repository=repository, ports=SuitePorts.free(), log_dir=logs / "loose", env=env) as suite:
                workloads.append(asyncio.run(intents_rows(suite, "0.85", workload)))
                for service in ("router", "cache"):
                    suite.kill_service(service)
                suite.env["INFERSCALE_SEMANTIC_VERIFY"] = "on"
                for service in ("cache", "router"):
                    suite.start_service(service)
                workloads.append(asyncio.run(intents_rows(suite, "0.85 + verify", workload)))
        finally:
            if redis is not None:
                redis.stop()
    text = report(l1, hits, e2e, workloads)
    print("\n" + text)
    (RESULTS / "cache_levels.md").write_text(text + "\n")
    plot(l1, hits, e2e, workloads, RESULTS / "cache_levels.png")
    print(f"\nwrote {RESULTS / 'cache_levels.md'} and {RESULTS / 'cache_levels.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
