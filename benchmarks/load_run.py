"""A bounded load run on loopback: throughput, latency and errors at concurrency 1 to 64, and where the router sheds load.

    python -m benchmarks.load_run [--requests 600] [--max-in-flight 48] [--concurrency 1 2 4 8 16 32 64]

The whole suite runs on the embedded Triton with the router's limit of calls in flight set to
--max-in-flight, so that the run crosses it: below the limit no request may fail; above it the
router refuses the excess at once with RESOURCE_EXHAUSTED instead of queueing it. Every request is
a digits cascade that skips the cache (the full path each time). Prints a table per concurrency
(throughput, p50/p99 of the answered requests, errors by status) and writes results/load_run.md
and the latency distributions to results/load_run.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import grpc
import numpy as np

from benchmarks.plots import latency_cdfs
from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import router_service_pb2, router_service_pb2_grpc

RESULTS = REPO_ROOT / "results"


async def level(router, requests: list[router_service_pb2.InferRequest], concurrency: int) -> dict:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(requests):
            request = requests[next_index]
            next_index += 1
            started = time.perf_counter()
            try:
                await router.Infer(request, timeout=30)
                latencies.append((time.perf_counter() - started) * 1000)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "answered": len(latencies),
        "throughput": len(latencies) / wall,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "errors": errors,
        "latencies": np.array(latencies),
    }


async def run(suite: Suite, count: int, levels: list[int]) -> list[dict]:
    images = load_split()[2].astype(np.float32)
    requests = [
        router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", images[i % len(images)][None, :])], skip_cache=True)
        for i in range(count)
    ]
    rows = []
    async with suite.aio_channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        await level(router, requests[:50], 4)  # warm the models and channels
        for concurrency in levels:
            print(f"  concurrency {concurrency}: {count} requests ...", flush=True)
            rows.append(await level(router, requests, concurrency))
    return rows


def table(rows: list[dict], max_in_flight: int) -> str:
    lines = [
        f"Digits cascade, cache skipped, router limit {max_in_flight} calls in flight; p50/p99 over answered requests.",
        "",
        "| concurrency | answered | req/s | p50 ms | p99 ms | errors |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(r["errors"].items())) or "none"
        lines.append(f"| {r['concurrency']} | {r['answered']} | {r['throughput']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {errors} |")
    below = [r for r in rows if r["concurrency"] <= max_in_flight]
    lines += ["", f"Errors at or below the limit: {sum(sum(r['errors'].values()) for r in below)}."]
    return "\n".join(lines)


def plot(rows: list[dict], path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    latency_cdfs(
        axis, [(f"concurrency {r['concurrency']}", r["latencies"]) for r in rows], title="Load run: latency by concurrency", what="answered requests"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--max-in-flight", type=int, default=48)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    env = {"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_ROUTER_MAX_IN_FLIGHT": str(args.max_in_flight)}
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "load_run", env=env) as suite:
        rows = asyncio.run(run(suite, args.requests, args.concurrency))
    report = table(rows, args.max_in_flight)
    print("\n" + report)
    (RESULTS / "load_run.md").write_text(report + "\n")
    plot(rows, RESULTS / "load_run.png")
    print(f"\nwrote {RESULTS / 'load_run.md'} and {RESULTS / 'load_run.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
