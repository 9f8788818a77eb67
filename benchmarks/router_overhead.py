"""InferScale's overhead over calling Triton directly, side by side in one run.

    python -m benchmarks.router_overhead [--model digits_linear] [--requests 400] [--concurrency 1 16 64]

On one embedded Triton, at each concurrency:
- a single model: tritonclient's asyncio gRPC client straight to Triton, against the router
  with strategy STRATEGY_SINGLE and the cache skipped (a miss every time), so the difference is
  what the router and orchestrator hops add;
- a cache hit: the same request again and again through the router (served from L4);
- a two-tier cascade (digits_linear, then digits_mlp when the first is below 0.9): a Triton BLS
  model (python backend) that runs it inside Triton, against InferScale's cascade.
The router paths also run through a router that embeds the orchestrator
(INFERSCALE_EMBED_ORCHESTRATOR=on, on the same Triton), one gRPC hop less per request.
Then the single-model router path once more on a second suite that traces every request (100%
sampling, exported over OTLP to a local sink), against the first suite, whose services trace
nothing; and the same for the router that embeds the orchestrator. Prints the table, writes it to results/router_overhead.md and draws the latency
distributions to results/router_overhead.png.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
DIRECT = "Triton directly"
ROUTER = "through the router"
HIT = "through the router, cache hit"
BLS = "cascade as a Triton BLS model"
CASCADE = "cascade through InferScale"
TRACED = "through the router, 100% traced"
EMBEDDED = "through the router, orchestrator embedded"
EMBEDDED_CASCADE = "cascade through InferScale, orchestrator embedded"
TRACED_EMBEDDED = "through the router, orchestrator embedded, 100% traced"
# What each path is compared with.
BASELINE = {
    DIRECT: DIRECT,
    ROUTER: DIRECT,
    HIT: DIRECT,
    BLS: BLS,
    CASCADE: BLS,
    TRACED: ROUTER,
    EMBEDDED: DIRECT,
    EMBEDDED_CASCADE: BLS,
    TRACED_EMBEDDED: EMBEDDED,
}

# The two-tier cascade inside Triton: digits_linear, then digits_mlp when the first answer's
# confidence is below 0.9, through the python backend's BLS calls.
BLS_CONFIG = """name: "digits_cascade_bls"
backend: "python"
max_batch_size: 0
input [ { name: "IMAGE" data_type: TYPE_FP32 dims: [ -1, 64 ] } ]
output [ { name: "PROBS" data_type: TYPE_FP32 dims: [ -1, 10 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
BLS_MODEL = """import triton_python_backend_utils as pb_utils


def call(model, image):
    request = pb_utils.InferenceRequest(model_name=model, requested_output_names=["PROBS"], inputs=[image])
    response = request.exec()
    if response.has_error():
        raise pb_utils.TritonModelException(response.error().message())
    return pb_utils.get_output_tensor_by_name(response, "PROBS")


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE")
            probs = call("digits_linear", image)
            if probs.as_numpy().max() < 0.9:
                probs = call("digits_mlp", image)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBS", probs.as_numpy())]))
        return responses
"""


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


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


def router_request(image: np.ndarray, **fields: object) -> router_service_pb2.InferRequest:
    return router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image[None, :])], **fields)


async def run(
    suite: Suite, model: str, requests: int, levels: list[int], warmup: int, paths: list[str], embedding: Suite | None = None
) -> list[dict]:
    _, _, images, _ = load_split()
    images = images.astype(np.float32)
    triton = triton_aio.InferenceServerClient(suite.triton_url)
    channel = grpc.aio.insecure_channel(suite.address("router"))
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    embedding_channel = grpc.aio.insecure_channel((embedding or suite).address("router"))
    embedding_router = router_service_pb2_grpc.RouterServiceStub(embedding_channel)
    single = [router_request(i, strategy=common_pb2.STRATEGY_SINGLE, model_name=model, skip_cache=True) for i in images]
    # Tier 1 at 0.9, tier 2 accepting whatever it answers: the same two tiers as the BLS model.
    two_tiers = [common_pb2.TierThresholds(tier=2, accept_threshold=1e-6)]
    cascade = [router_request(i, confidence_threshold=0.9, tier_thresholds=two_tiers, skip_cache=True) for i in images]
    repeated = router_request(images[0], strategy=common_pb2.STRATEGY_SINGLE, model_name=model)

    def triton_call(name: str) -> Callable[[int], Awaitable[None]]:
        async def call(index: int) -> None:
            tensor = InferInput("IMAGE", [1, 64], "FP32")
            tensor.set_data_from_numpy(images[index % len(images)][None, :])
            await triton.infer(name, [tensor], client_timeout=30)

        return call

    def router_call(
        prepared: list[router_service_pb2.InferRequest], through: router_service_pb2_grpc.RouterServiceStub = router
    ) -> Callable[[int], Awaitable[None]]:
        async def call(index: int) -> None:
            await through.Infer(prepared[index % len(prepared)], timeout=30)

        return call

    calls = {
        DIRECT: triton_call(model),
        ROUTER: router_call(single),
        TRACED: router_call(single),
        HIT: router_call([repeated]),
        BLS: triton_call("digits_cascade_bls"),
        CASCADE: router_call(cascade),
        EMBEDDED: router_call(single, embedding_router),
        EMBEDDED_CASCADE: router_call(cascade, embedding_router),
        TRACED_EMBEDDED: router_call(single, embedding_router),
    }
    rows = []
    for concurrency in levels:
        for path in paths:
            await measure(calls[path], warmup, concurrency)
            print(f"  {path} at concurrency {concurrency} ({requests} requests) ...", flush=True)
            latencies, wall = await measure(calls[path], requests, concurrency)
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
    await embedding_channel.close()
    await triton.close()
    return rows


def table(rows: list[dict], model: str) -> str:
    lines = [
        f"Model {model}, one image per request (the cascade: digits_linear, then digits_mlp below 0.9).",
        "Ratios compare each path with its baseline at the same concurrency: the router paths with Triton directly,",
        "InferScale's cascade with the BLS cascade, the traced router with the untraced one.",
        "",
        "| path | concurrency | p50 ms | p99 ms | req/s | vs | p50 ratio | p99 ratio | throughput ratio |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    by_path = {(r["path"], r["concurrency"]): r for r in rows}
    for row in rows:
        base = by_path.get((BASELINE[row["path"]], row["concurrency"]))
        ratios = (
            f"{base['path']} | {row['p50'] / base['p50']:.2f} | {row['p99'] / base['p99']:.2f} | "
            f"{row['throughput'] / base['throughput']:.2f}"
            if base is not None and base is not row
            else "- | 1.00 | 1.00 | 1.00"
        )
        lines.append(
            f"| {row['path']} | {row['concurrency']} | {row['p50']:.2f} | {row['p99']:.2f} | {row['throughput']:.0f} | {ratios} |"
        )
    added = [
        f"{r['path']} adds {r['p50'] - by_path[(DIRECT, r['concurrency'])]['p50']:.2f} ms at p50 at concurrency {r['concurrency']}"
        for r in rows
        if r["path"] in (ROUTER, EMBEDDED, HIT) and (DIRECT, r["concurrency"]) in by_path
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


def run_beside_embedding(suite: Suite, log_dir: pathlib.Path, env: dict[str, str], args: argparse.Namespace, paths: list[str]) -> list[dict]:
    """Runs ``paths`` on ``suite``, with a second router that embeds the orchestrator beside it
    on the same Triton (its own orchestrator process stopped) for the embedded paths."""
    embedding = Suite(
        ports=SuitePorts.free(), triton_url=suite.triton_url, log_dir=log_dir, env={**env, "INFERSCALE_EMBED_ORCHESTRATOR": "on"}
    )
    with embedding:
        embedding.kill_service("orchestrator")
        return asyncio.run(run(suite, args.model, args.requests, args.concurrency, args.warmup, paths, embedding))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_linear")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inferscale-overhead-") as scratch:
        repository = pathlib.Path(scratch) / "model_repository"
        shutil.copytree(REPO_ROOT / "model_repository", repository, ignore=shutil.ignore_patterns("__pycache__"))
        (repository / "digits_cascade_bls" / "1").mkdir(parents=True)
        (repository / "digits_cascade_bls" / "config.pbtxt").write_text(BLS_CONFIG)
        (repository / "digits_cascade_bls" / "1" / "model.py").write_text(BLS_MODEL)
        logs = RESULTS / "logs" / "router_overhead"
        print("Starting the suite on the embedded Triton, tracing off ...", flush=True)
        untraced = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
        with Suite(ports=SuitePorts.free(), log_dir=logs / "untraced", model_repository=repository, env=untraced) as suite:
            paths = [DIRECT, ROUTER, EMBEDDED, HIT, BLS, CASCADE, EMBEDDED_CASCADE]
            rows = run_beside_embedding(suite, logs / "embedded", untraced, args, paths)
        sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        traced = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        }
        print("Starting a second suite that traces every request ...", flush=True)
        with Suite(ports=SuitePorts.free(), log_dir=logs / "traced", model_repository=repository, env=traced) as suite:
            rows += run_beside_embedding(suite, logs / "traced-embedded", traced, args, [TRACED, TRACED_EMBEDDED])
        sink.shutdown()
    report = table(rows, args.model)
    print("\n" + report)
    (RESULTS / "router_overhead.md").write_text(report + "\n")
    plot(rows, RESULTS / "router_overhead.png")
    print(f"\nwrote {RESULTS / 'router_overhead.md'} and {RESULTS / 'router_overhead.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
