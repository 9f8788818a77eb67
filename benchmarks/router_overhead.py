"""Latency of calling Triton directly versus through InferScale's router, same model, side by side in one run.

    python -m benchmarks.router_overhead [--model digits_linear] [--requests 400] [--concurrency 1 16]

Both paths run the same single model on the same embedded Triton: the direct path with
tritonclient's asyncio gRPC client, the router path with strategy STRATEGY_SINGLE and the cache
skipped (a cache miss every time), so the difference is what the router and orchestrator hops
add. Prints a table of p50/p99 latency and throughput per concurrency, writes it to
results/router_overhead.md and draws the latency distributions to results/router_overhead.png.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from benchmarks.plots import latency_cdfs
from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc

RESULTS = REPO_ROOT / "results"


async def measure(call: Callable[[int], Awaitable[None]], requests: int, concurrency: int) -> tuple[np.ndarray, float]:
    """Runs ``requests`` calls with ``concurrency`` in flight; returns per-call latencies (ms) and the wall time (s)."""
    latencies = np.zeros(requests)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            await call(index)
            latencies[index] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def run(suite: Suite, model: str, requests: int, levels: list[int], warmup: int) -> list[dict]:
    _, _, images, _ = load_split()
    images = images.astype(np.float32)
    triton = triton_aio.InferenceServerClient(suite.triton_url)
    channel = grpc.aio.insecure_channel(suite.address("router"))
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    router_requests = [
        router_service_pb2.InferRequest(
            task="digits",
            inputs=[from_numpy("IMAGE", images[i % len(images)][None, :])],
            strategy=common_pb2.STRATEGY_SINGLE,
            model_name=model,
            skip_cache=True,
        )
        for i in range(len(images))
    ]

    async def direct(index: int) -> None:
        tensor = InferInput("IMAGE", [1, 64], "FP32")
        tensor.set_data_from_numpy(images[index % len(images)][None, :])
        await triton.infer(model, [tensor], client_timeout=30)

    async def through_router(index: int) -> None:
        await router.Infer(router_requests[index % len(router_requests)], timeout=30)

    rows = []
    for concurrency in levels:
        for path, call in (("Triton directly", direct), ("through the router", through_router)):
            await measure(call, warmup, concurrency)
            print(f"  measuring {path} at concurrency {concurrency} ({requests} requests) ...", flush=True)
            latencies, wall = await measure(call, requests, concurrency)
            rows.append(
                {
                    "path": path,
                    "concurrency": concurrency,
                    "p50": float(np.percentile(latencies, 50)),
                    "p99": float(np.percentile(latencies, 99)),
                    "throughput": requests / wall,
                    "latencies": latencies,
                }
            )
    await channel.close()
    await triton.close()
    return rows


def table(rows: list[dict], model: str) -> str:
    lines = [
        f"Model {model}, one image per request, cache skipped; ratios are router / direct.",
        "",
        "| path | concurrency | p50 ms | p99 ms | req/s | p50 ratio | p99 ratio | throughput ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    direct = {r["concurrency"]: r for r in rows if r["path"] == "Triton directly"}
    for row in rows:
        base = direct[row["concurrency"]]
        ratios = (
            f"{row['p50'] / base['p50']:.2f} | {row['p99'] / base['p99']:.2f} | {row['throughput'] / base['throughput']:.2f}"
            if row is not base
            else "1.00 | 1.00 | 1.00"
        )
        lines.append(
            f"| {row['path']} | {row['concurrency']} | {row['p50']:.2f} | {row['p99']:.2f} | {row['throughput']:.0f} | {ratios} |"
        )
    added = [
        f"router adds {r['p50'] - direct[r['concurrency']]['p50']:.2f} ms at p50 at concurrency {r['concurrency']}"
        for r in rows
        if r["path"] != "Triton directly"
    ]
    return "\n".join([*lines, "", "; ".join(added)])


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["concurrency"] for r in rows})
    figure, axes = plt.subplots(1, len(levels), figsize=(6 * len(levels), 4), squeeze=False)
    for axis, level in zip(axes[0], levels, strict=True):
        latency_cdfs(axis, [(r["path"], r["latencies"]) for r in rows if r["concurrency"] == level], title=f"concurrency {level}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_linear")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "router_overhead", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        rows = asyncio.run(run(suite, args.model, args.requests, args.concurrency, args.warmup))
    report = table(rows, args.model)
    print("\n" + report)
    (RESULTS / "router_overhead.md").write_text(report + "\n")
    plot(rows, RESULTS / "router_overhead.png")
    print(f"\nwrote {RESULTS / 'router_overhead.md'} and {RESULTS / 'router_overhead.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
