"""Accuracy versus compute for each model alone, the cascade at several threshold pairs, the ensemble, complexity analysis, experts and adaptive search.

    python -m benchmarks.strategies [--requests 719] [--concurrency 4]

Every configuration sends the same holdout digits through the router (cache skipped) on one
embedded Triton, side by side in one run. Compute is what Triton's own statistics measured:
the growth of every model's ``compute_infer`` time during the configuration's requests, divided
by the requests. Prints a table (accuracy, mean compute, its ratio to the best single model,
relative cost units, p50/p99 latency), writes it to results/strategies.md and draws
accuracy against compute to results/strategies.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio

from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc

RESULTS = REPO_ROOT / "results"
MODELS = ("digits_linear", "digits_mlp", "digits_ensemble")
CASCADE_THRESHOLDS = ((0.80, 0.60), (0.90, 0.70), (0.95, 0.80), (0.98, 0.90), (0.99, 0.95))
# Per-tier accept thresholds (tier 1, tier 2), one threshold each: a small grid fixed by hand,
# not searched on this holdout; learning them from feedback is the monitor's job.
PER_TIER_THRESHOLDS = ((0.95, 0.80), (0.99, 0.90), (0.99, 0.95))
# Adaptive search budgets (model calls per request), at the router's default threshold 0.90.
SEARCH_CALLS = (2, 4, 8)


@dataclass
class Config:
    """One row of the comparison: a name and the request fields that select it."""

    name: str
    kind: str
    fields: dict = field(default_factory=dict)


def configurations() -> list[Config]:
    rows = [
        Config(f"{m} alone", "single", {"strategy": common_pb2.STRATEGY_SINGLE, "model_name": m}) for m in MODELS
    ]
    rows += [
        Config(f"cascade {high:.2f}/{low:.2f}", "cascade", {"confidence_threshold": high, "escalate_threshold": low})
        for high, low in CASCADE_THRESHOLDS
    ]
    rows += [
        Config(
            f"cascade per tier {first:.2f}, {second:.2f}",
            "cascade",
            {"tier_thresholds": [
                common_pb2.TierThresholds(tier=1, accept_threshold=first),
                common_pb2.TierThresholds(tier=2, accept_threshold=second),
            ]},
        )
        for first, second in PER_TIER_THRESHOLDS
    ]
    rows.append(Config("ensemble (mean probability)", "ensemble", {"strategy": common_pb2.STRATEGY_ENSEMBLE}))
    rows += [
        Config("cascade 0.90/0.70 + complexity analysis", "complexity", {"analyze_complexity": True}),
        Config("experts by complexity", "complexity", {"strategy": common_pb2.STRATEGY_EXPERT}),
    ]
    rows += [
        Config(f"adaptive search, {calls} calls", "search", {"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": calls})
        for calls in SEARCH_CALLS
    ]
    return rows


async def compute_ns(triton: triton_aio.InferenceServerClient) -> int:
    stats = await triton.get_inference_statistics()
    return sum(s.inference_stats.compute_infer.ns for s in stats.model_stats)


async def run_config(router, triton, config: Config, images: np.ndarray, labels: np.ndarray, concurrency: int) -> dict:
    latencies = np.zeros(len(images))
    right = np.zeros(len(images), dtype=bool)
    cost = np.zeros(len(images))
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(images):
            index = next_index
            next_index += 1
            request = router_service_pb2.InferRequest(
                task="digits", inputs=[from_numpy("IMAGE", images[index][None, :])], skip_cache=True, **config.fields
            )
            started = time.perf_counter()
            response = await router.Infer(request, timeout=60)
            latencies[index] = (time.perf_counter() - started) * 1000
            right[index] = response.answer.label == str(labels[index])
            cost[index] = response.total_cost

    before = await compute_ns(triton)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    after = await compute_ns(triton)
    return {
        "name": config.name,
        "kind": config.kind,
        "accuracy": float(right.mean()),
        "compute_us": (after - before) / len(images) / 1000,
        "cost_units": float(cost.mean()),
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
    }


async def run(suite: Suite, requests: int, concurrency: int) -> list[dict]:
    split = load_split()
    images, labels = split.x_holdout[:requests].astype(np.float32), split.y_holdout[:requests]
    triton = triton_aio.InferenceServerClient(suite.triton_url)
    channel = grpc.aio.insecure_channel(suite.address("router"))
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    # One pass to warm every model and the orchestrator's recent latencies and confidences.
    await run_config(router, triton, Config("warm-up", "warm-up", {"confidence_threshold": 1.0}), images[:50], labels[:50], concurrency)
    rows = []
    for config in configurations():
        print(f"  {config.name:<30} ({len(images)} requests) ...", flush=True)
        rows.append(await run_config(router, triton, config, images, labels, concurrency))
    await channel.close()
    await triton.close()
    return rows


def table(rows: list[dict], requests: int) -> str:
    singles = [r for r in rows if r["kind"] == "single"]
    best = max(singles, key=lambda r: (r["accuracy"], -r["compute_us"]))
    lines = [
        f"{requests} holdout digits per row, cache skipped. Compute: Triton's compute_infer per request, all models.",
        f"Best single model: {best['name']} ({best['accuracy']:.4f}); 'compute ratio' is compute / its compute.",
        "",
        "| configuration | accuracy | compute µs/request | compute ratio | cost units | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['accuracy']:.4f} | {r['compute_us']:.0f} | {r['compute_us'] / best['compute_us']:.2f} | "
            f"{r['cost_units']:.2f} | {r['p50']:.2f} | {r['p99']:.2f} |"
        )
    matching = [r for r in rows if r["kind"] == "cascade" and r["accuracy"] >= best["accuracy"]]
    if matching:
        cheapest = min(matching, key=lambda r: r["compute_us"])
        lines.append(
            f"\nCheapest cascade at or above the best single model's accuracy: {cheapest['name']}, accuracy "
            f"{cheapest['accuracy']:.4f} at {cheapest['compute_us'] / best['compute_us']:.0%} of its compute."
        )
    else:
        lines.append("\nNo cascade configuration reached the best single model's accuracy in this run.")
    return "\n".join(lines)


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("single", "o"), ("cascade", "s"), ("ensemble", "^"), ("complexity", "v"), ("search", "D")):
        chosen = [r for r in rows if r["kind"] == kind]
        axis.plot([r["compute_us"] for r in chosen], [r["accuracy"] for r in chosen], marker=marker,
                  linestyle="-" if kind in ("cascade", "search") else "", label=kind)
        for r in chosen:
            axis.annotate(r["name"].replace(" alone", "").replace("cascade ", ""), (r["compute_us"], r["accuracy"]),
                          fontsize=7, xytext=(4, -10), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("Triton compute per request (µs, log scale)")
    axis.set_ylabel("holdout accuracy")
    axis.set_title("Accuracy versus compute: models alone, cascades, ensemble, search")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(RESULTS / "strategies.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=719, help="holdout digits per configuration (at most 719)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "strategies", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        rows = asyncio.run(run(suite, args.requests, args.concurrency))
    report = table(rows, min(args.requests, 719))
    print("\n" + report)
    (RESULTS / "strategies.md").write_text(report + "\n")
    plot(rows)
    print(f"\nwrote {RESULTS / 'strategies.md'} and {RESULTS / 'strategies.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
