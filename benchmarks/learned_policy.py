"""Learns the cascade's per-tier thresholds from feedback on one half of the holdout, publishes them through shadow evaluation, and applies them to the other half.

    python -m benchmarks.learned_policy [--concurrency 4] [--target 0.99]

Half A (360 digits) goes through the router as exploration traffic (threshold 1.0: every tier
answers), and the monitor is told each correct answer (RecordFeedback). Its first two thirds
teach: ProposeRoutingPolicy learns the per-tier thresholds of least compute that reach the target
(the top tier's own accuracy on that data, that is, match the best single model, unless --target
names one) and puts them in shadow. Its last third is the shadow traffic: the policy is replayed on it and published only if
it holds the target there. The router then applies the published policy by itself, to requests
that set no thresholds. Half B (359 digits), never seen while learning, is sent with the router's
default thresholds (0.90/0.70), with the published policy, and to the top tier alone. Prints the
three side by side (accuracy, cost units, Triton-measured compute); then half B once more as a
weighted-vote ensemble, with equal weights and with the weights the policy learned from the same
feedback. Writes results/learned_policy.md and draws accuracy against cost, with the target, in
results/learned_policy.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import tritonclient.grpc.aio as triton_aio

from benchmarks.plots import save_log_x
from benchmarks.strategies import RESULTS, Config, calibrate_compute, run_config
from inferscale.models.digits import load_split
from inferscale.suite import Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc, router_service_pb2, router_service_pb2_grpc

# The shadow run here is a third of half the holdout: the monitor's floor on a shadow run (200 by
# default, which a proposal cannot lower) is set to it.
HALF_HOLDOUT = len(load_split().y_holdout) // 2
SHADOW_REQUESTS = HALF_HOLDOUT - 2 * HALF_HOLDOUT // 3
SUITE_ENV = {"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_POLICY_MIN_SHADOW_REQUESTS": str(SHADOW_REQUESTS)}


async def explore_and_feed_back(router, monitor, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    for index, image in enumerate(images):
        request = router_service_pb2.InferRequest(
            request_id=f"{prefix}-{index}", task="digits", inputs=[from_numpy("IMAGE", image[None, :])],
            confidence_threshold=1.0, skip_cache=True,
        )
        await router.Infer(request, timeout=60)
    await asyncio.sleep(1.0)  # the router's and orchestrator's events reach the monitor in batches
    for index, label in enumerate(labels):
        await monitor.RecordFeedback(
            monitor_service_pb2.RecordFeedbackRequest(request_id=f"{prefix}-{index}", label=str(label)), timeout=10
        )


async def applied_policy(router, image: np.ndarray, label: str, timeout_seconds: float = 15.0) -> None:
    """Waits until the router applies the published policy to a request without thresholds."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image[None, :])], skip_cache=True)
        if (await router.Infer(request, timeout=60)).policy_version == label:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the router did not apply {label} within {timeout_seconds} s")
        await asyncio.sleep(0.2)


async def run(suite: Suite, concurrency: int, target: float) -> tuple[monitor_service_pb2.RoutingPolicy, list[dict]]:
    split = load_split()
    order = np.random.default_rng(11).permutation(len(split.y_holdout))
    images, labels = split.x_holdout.astype(np.float32), split.y_holdout
    half_a, half_b = order[: len(order) // 2], order[len(order) // 2 :]
    teach, shadow = half_a[: 2 * len(half_a) // 3], half_a[2 * len(half_a) // 3 :]
    triton = triton_aio.InferenceServerClient(suite.triton_url)
    router_channel = suite.aio_channel("router")
    monitor_channel = suite.aio_channel("monitor")
    router = router_service_pb2_grpc.RouterServiceStub(router_channel)
    monitor = monitor_service_pb2_grpc.MonitorServiceStub(monitor_channel)
    print(f"  exploring half A's first {len(teach)} digits (every tier answers) and sending feedback ...", flush=True)
    await explore_and_feed_back(router, monitor, images[teach], labels[teach], "teach")
    proposed = (
        await monitor.ProposeRoutingPolicy(
            monitor_service_pb2.ProposeRoutingPolicyRequest(task="digits", target_accuracy=target, min_shadow_requests=len(shadow)),
            timeout=30,
            metadata=suite.metadata("admin"),
        )
    ).policy
    learned = ", ".join(f"tier {t.tier} {t.accept_threshold:g}" for t in proposed.tier_thresholds)
    print(f"  proposed policy v{proposed.version}: {learned} (learned on {proposed.learned_requests}: accuracy "
          f"{proposed.learned_accuracy:.4f}, cost {proposed.learned_cost:.2f}); in shadow", flush=True)
    print(f"  shadow traffic: half A's last {len(shadow)} digits ...", flush=True)
    await explore_and_feed_back(router, monitor, images[shadow], labels[shadow], "shadow")
    current = await monitor.GetPublishedRoutingPolicy(monitor_service_pb2.GetPublishedRoutingPolicyRequest(task="digits"), timeout=10)
    policy = current.published
    if policy.version != proposed.version:
        raise RuntimeError(f"policy v{proposed.version} was not published after shadow evaluation: {current}")
    print(f"  published v{policy.version}: shadow accuracy {policy.shadow_accuracy:.4f} on {policy.shadow_requests} requests", flush=True)
    await applied_policy(router, images[half_b[0]], f"digits/v{policy.version}")
    print("  calibrating each model's compute per inference ...", flush=True)
    calibrated = await calibrate_compute(triton, images)
    configs = [
        Config("top tier alone (digits_ensemble)", "single", {"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "digits_ensemble"}),
        Config("cascade, default thresholds 0.90/0.70", "cascade", {"confidence_threshold": 0.90, "escalate_threshold": 0.70}),
        Config(f"cascade, published policy digits/v{policy.version} (applied by the router)", "cascade", {}),
        Config(
            "ensemble, weighted vote, equal weights",
            "ensemble",
            {
                "strategy": common_pb2.STRATEGY_ENSEMBLE,
                "aggregation": common_pb2.AGGREGATION_WEIGHTED_VOTE,
                "member_weights": [common_pb2.TierWeight(tier=w.tier, weight=1.0) for w in policy.ensemble_weights],
            },
        ),
        Config(
            f"ensemble, weighted vote, weights of digits/v{policy.version} (applied by the router)",
            "ensemble",
            {"strategy": common_pb2.STRATEGY_ENSEMBLE, "aggregation": common_pb2.AGGREGATION_WEIGHTED_VOTE},
        ),
    ]
    rows = []
    for config in configs:
        print(f"  half B ({len(half_b)} digits): {config.name} ...", flush=True)
        rows.append(await run_config(router, triton, config, images[half_b], labels[half_b], concurrency, calibrated))
    await router_channel.close()
    await monitor_channel.close()
    await triton.close()
    return policy, rows


def table(policy: monitor_service_pb2.RoutingPolicy, rows: list[dict]) -> str:
    top = rows[0]
    learned = ", ".join(f"tier {t.tier} ≥ {t.accept_threshold:g}" for t in policy.tier_thresholds)
    lines = [
        f"Policy digits/v{policy.version} learned on {policy.learned_requests} scored requests of half A (target accuracy "
        f"{policy.target_accuracy:.4f}): {learned}; replayed in shadow on {policy.shadow_requests} more "
        f"(accuracy {policy.shadow_accuracy:.4f}, cost {policy.shadow_cost:.2f}) and published.",
        "Applied by the router to half B, which neither learning nor shadow saw:",
        "",
        "| configuration | accuracy | reaches the target | cost units | compute µs/request (Triton, calibrated) | compute vs top tier |",
        "| --- | ---: | :---: | ---: | ---: | ---: |",
    ]
    cascades, ensembles = [r for r in rows if r["kind"] != "ensemble"], [r for r in rows if r["kind"] == "ensemble"]
    for r in cascades:
        reaches = "yes" if r["accuracy"] >= policy.target_accuracy - 1e-12 else "no"
        lines.append(
            f"| {r['name']} | {r['accuracy']:.4f} | {reaches} | {r['cost_units']:.2f} | {r['compute_us']:.0f} | "
            f"{r['compute_us'] / top['compute_us']:.0%} |"
        )
    weights = ", ".join(f"tier {w.tier} {w.weight:g}" for w in policy.ensemble_weights)
    lines += [
        "",
        f"Ensemble member weights learned with the policy (log odds of each tier's accuracy): {weights}. Half B again:",
        "",
        "| configuration | accuracy | cost units |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {r['name']} | {r['accuracy']:.4f} | {r['cost_units']:.2f} |" for r in ensembles]
    return "\n".join(lines)


def plot(policy: monitor_service_pb2.RoutingPolicy, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import ScalarFormatter

    # Short labels, in the order of the rows; alternate above and below, since the two cascades
    # often land at the same accuracy.
    labels = ["top tier alone", "defaults 0.90/0.70", f"learned v{policy.version}", "equal weights", f"weights of v{policy.version}"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("single", "o"), ("cascade", "s"), ("ensemble", "^")):
        chosen = [r for r in rows if r["kind"] == kind]
        axis.plot([r["cost_units"] for r in chosen], [r["accuracy"] for r in chosen], marker=marker, linestyle="", label=kind)
    for index, (r, label) in enumerate(zip(rows, labels, strict=True)):
        axis.annotate(label, (r["cost_units"], r["accuracy"]), fontsize=8, ha="right" if r["kind"] == "ensemble" else "left",
                      xytext=(-6 if r["kind"] == "ensemble" else 6, 8 if index % 2 else -12), textcoords="offset points")
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.axhline(policy.target_accuracy, color="grey", linestyle="--", linewidth=1, label=f"target {policy.target_accuracy:.4f}")
    save_log_x(
        figure,
        axis,
        RESULTS / "learned_policy.png",
        xlabel="cost units per request (log scale)",
        ylabel="accuracy on half B (unseen while learning)",
        title=f"Defaults versus the policy learned from feedback (digits/v{policy.version})",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--target", type=float, default=0.0, help="target accuracy; 0 (the default): the top tier's on the teaching data")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "learned_policy", env=SUITE_ENV) as suite:
        policy, rows = asyncio.run(run(suite, args.concurrency, args.target))
    report = table(policy, rows)
    print("\n" + report)
    (RESULTS / "learned_policy.md").write_text(report + "\n")
    plot(policy, rows)
    print(f"\nwrote {RESULTS / 'learned_policy.md'} and {RESULTS / 'learned_policy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
