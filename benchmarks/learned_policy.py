"""Learns the cascade's per-tier thresholds from feedback on one half of the holdout and applies them to the other.

    python benchmarks/learned_policy.py [--concurrency 4] [--target 0]

Half A (360 digits) goes through the router as exploration traffic (threshold 1.0: every tier
answers), and the monitor is told each correct answer (RecordFeedback). The monitor's
GetRoutingPolicy then learns the per-tier thresholds of least compute that match, on half A,
the top tier's accuracy (or --target). Half B (359 digits), never seen while learning, is sent
with the router's default thresholds, with the learned ones, and to the top tier alone. Prints
the three side by side (accuracy, cost units, Triton-measured compute) and writes
results/learned_policy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio

from benchmarks.strategies import RESULTS, Config, run_config
from inferscale.models.digits import load_split
from inferscale.suite import Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc, router_service_pb2, router_service_pb2_grpc


async def explore_and_feed_back(router, monitor, images: np.ndarray, labels: np.ndarray) -> None:
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        request = router_service_pb2.InferRequest(
            request_id=f"explore-{index}", task="digits", inputs=[from_numpy("IMAGE", image[None, :])],
            confidence_threshold=1.0, skip_cache=True,
        )
        await router.Infer(request, timeout=60)
    await asyncio.sleep(1.0)  # the router's and orchestrator's events reach the monitor in batches
    for index, label in enumerate(labels):
        await monitor.RecordFeedback(
            monitor_service_pb2.RecordFeedbackRequest(request_id=f"explore-{index}", label=str(label)), timeout=10
        )


async def run(suite: Suite, concurrency: int, target: float) -> tuple[monitor_service_pb2.GetRoutingPolicyResponse, list[dict]]:
    split = load_split()
    order = np.random.default_rng(11).permutation(len(split.y_holdout))
    images, labels = split.x_holdout.astype(np.float32), split.y_holdout
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    triton = triton_aio.InferenceServerClient(suite.triton_url)
    router_channel = grpc.aio.insecure_channel(suite.address("router"))
    monitor_channel = grpc.aio.insecure_channel(suite.address("monitor"))
    router = router_service_pb2_grpc.RouterServiceStub(router_channel)
    monitor = monitor_service_pb2_grpc.MonitorServiceStub(monitor_channel)
    print(f"  exploring half A ({len(half_a)} digits, every tier answers) and sending feedback ...", flush=True)
    await explore_and_feed_back(router, monitor, images[half_a], labels[half_a])
    policy = await monitor.GetRoutingPolicy(monitor_service_pb2.GetRoutingPolicyRequest(target_accuracy=target), timeout=30)
    learned = ", ".join(f"tier {t.tier} {t.accept_threshold:g}" for t in policy.tier_thresholds)
    print(f"  learned policy {policy.version}: {learned} (on half A: accuracy {policy.expected_accuracy:.4f}, "
          f"cost {policy.expected_cost:.2f})", flush=True)
    configs = [
        Config("top tier alone (digits_ensemble)", "single", {"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "digits_ensemble"}),
        Config("cascade, default thresholds 0.90/0.70", "cascade", {}),
        Config(f"cascade, learned policy {policy.version}", "cascade", {"tier_thresholds": list(policy.tier_thresholds)}),
    ]
    rows = []
    for config in configs:
        print(f"  half B ({len(half_b)} digits): {config.name} ...", flush=True)
        rows.append(await run_config(router, triton, config, images[half_b], labels[half_b], concurrency))
    await router_channel.close()
    await monitor_channel.close()
    await triton.close()
    return policy, rows


def table(policy: monitor_service_pb2.GetRoutingPolicyResponse, rows: list[dict]) -> str:
    top = rows[0]
    learned = ", ".join(f"tier {t.tier} ≥ {t.accept_threshold:g}" for t in policy.tier_thresholds)
    lines = [
        f"Policy {policy.version} learned on half A ({policy.requests} scored requests, target accuracy "
        f"{policy.target_accuracy:.4f}): {learned}.",
        "Applied to half B, which the learning never saw:",
        "",
        "| configuration | accuracy | cost units | compute µs/request | compute vs top tier |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['accuracy']:.4f} | {r['cost_units']:.2f} | {r['compute_us']:.0f} | {r['compute_us'] / top['compute_us']:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--target", type=float, default=0.0, help="target accuracy; 0: the top tier's on half A")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "learned_policy", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        policy, rows = asyncio.run(run(suite, args.concurrency, args.target))
    report = table(policy, rows)
    print("\n" + report)
    (RESULTS / "learned_policy.md").write_text(report + "\n")
    print(f"\nwrote {RESULTS / 'learned_policy.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
