"""InferScale's overhead over calling Triton directly, side by side in one run.

    python -m benchmarks.router_overhead [--model digits_linear] [--requests 400] [--concurrency 1 16 64]

On one embedded Triton, at each concurrency:
- a single model: tritonclient's asyncio gRPC client straight to Triton, against the router
  with strategy STRATEGY_SINGLE and the cache skipped (a miss every time), so the difference is
  what the router and orchestrator hops add;
- the floor under any Python router: the same tritonclient calls through benchmarks.bare_proxy,
  which forwards each call's bytes to Triton unparsed, untraced and traced at 100%;
- a cache hit: the same request again and again through the router (served from L4);
- a two-tier cascade (digits_linear, then digits_mlp when the first is below 0.9): a Triton BLS
  model (python backend) that runs it inside Triton, against InferScale's cascade.
The router paths also run through a router that embeds the orchestrator
(INFERSCALE_EMBED_ORCHESTRATOR=on, on the same Triton), one gRPC hop less per request, and
through a third, embedding router whose services record every span but export none (what the
instrumentation and the spans cost before any export).
Then the single-model router paths once more on a second suite that traces every request (100%
sampling, Triton's spans too, exported over OTLP to a sink in another process), against the
first suite's, which trace nothing; and through an embedding router beside it that samples 10%
of the traces at their root (parentbased_traceidratio), as a deployment would.

Beside latency and throughput, each row gets the CPU time every process spent per request
(the load generator, each service, Triton with its python-backend stubs): when the cores are
saturated, throughput is the cores divided by that total, whatever the number of processes.

Prints the tables, writes them to results/router_overhead.md, draws the latency
distributions to results/router_overhead.png and the CPU time per request, stacked by process,
to results/router_overhead_cpu.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import pathlib
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import psutil
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from benchmarks.bare_proxy import serve as bare_proxy_serve
from benchmarks.plots import latency_cdfs
from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT, Suite, SuitePorts, free_port
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
RECORDED_EMBEDDED = "through the router, orchestrator embedded, spans recorded, none exported"
SAMPLED_EMBEDDED = "through the router, orchestrator embedded, 10% traced"
PROXY = "through a bare Python gRPC proxy (the floor)"
TRACED_PROXY = "through a bare Python gRPC proxy, 100% traced"
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
    RECORDED_EMBEDDED: EMBEDDED,
    SAMPLED_EMBEDDED: EMBEDDED,
    PROXY: DIRECT,
    TRACED_PROXY: PROXY,
}
# The processes whose CPU time each row counts, in the tables' order.
ROLES = ("load generator", "router", "orchestrator", "cache", "monitor", "Triton")

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

    # Keep-alive, as a collector speaks: exporters reuse their connection.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve_sink(port: int) -> None:
    """Runs the sink in its own process, so that taking the spans costs the load generator nothing."""
    ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


@dataclasses.dataclass
class BareProxy:
    """A running benchmarks.bare_proxy: where to call it, and its process."""

    url: str
    process: multiprocessing.process.BaseProcess


@contextlib.contextmanager
def bare_proxy(triton: Suite, env: dict[str, str]) -> Iterator[BareProxy]:
    """benchmarks.bare_proxy in a process of its own in front of ``triton``'s Triton, with ``env``'s tracing."""
    assert triton.triton_url is not None
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=bare_proxy_serve, args=(port, triton.triton_url, env), daemon=True)
    process.start()
    try:
        url = f"127.0.0.1:{port}"
        with grpc.insecure_channel(url) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        yield BareProxy(url, process)
    finally:
        process.terminate()
        process.join(10)


def processes_of(target: Suite | BareProxy, triton: Suite, services: bool) -> dict[str, list[psutil.Process]]:
    """The processes a path keeps busy, by role: the load generator, Triton with its python-backend
    stubs and, with ``services``, the bare proxy (in the router's place) or those of the suite
    that are running."""
    assert triton.triton is not None and triton.triton.pid is not None
    server = psutil.Process(triton.triton.pid)
    roles = {"load generator": [psutil.Process()], "Triton": [server, *server.children(recursive=True)]}
    if isinstance(target, BareProxy):
        assert target.process.pid is not None
        roles["router"] = [psutil.Process(target.process.pid)]
    elif services:
        roles.update({service: [psutil.Process(process.pid)] for service, process in target.processes.items()})
    return roles


def cpu_seconds(roles: dict[str, list[psutil.Process]]) -> dict[tuple[str, int], float]:
    """User plus system CPU time each role's processes have spent so far, by (role, pid).

    Triton may replace a model's stub process while a row runs (a repository poll that reloads
    the model): a process gone by the time it is read has no entry, and cpu_spent counts only
    the processes read at both ends.
    """
    spent = {}
    for role, processes in roles.items():
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                spent[role, process.pid] = times.user + times.system
    return spent


def cpu_spent(role: str, before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> float:
    """The CPU seconds ``role``'s processes spent between two readings of cpu_seconds."""
    return sum(after[key] - before[key] for key in after.keys() & before.keys() if key[0] == role)


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


async def run(through: dict[str, Suite | BareProxy], triton: Suite, model: str, requests: int, levels: list[int], warmup: int) -> list[dict]:
    """Measures each path in ``through`` (path -> the suite whose router, or Triton, it calls, or
    the bare proxy) at each level."""
    _, _, images, _ = load_split()
    images = images.astype(np.float32)
    assert triton.triton_url is not None
    direct = triton_aio.InferenceServerClient(triton.triton_url)
    proxies = {id(proxy): triton_aio.InferenceServerClient(proxy.url) for proxy in through.values() if isinstance(proxy, BareProxy)}
    channels = {id(suite): suite.aio_channel("router") for suite in through.values() if isinstance(suite, Suite)}
    single = [router_request(i, strategy=common_pb2.STRATEGY_SINGLE, model_name=model, skip_cache=True) for i in images]
    # Tier 1 at 0.9, tier 2 accepting whatever it answers: the same two tiers as the BLS model.
    two_tiers = [common_pb2.TierThresholds(tier=2, accept_threshold=1e-6)]
    cascade = [router_request(i, confidence_threshold=0.9, tier_thresholds=two_tiers, skip_cache=True) for i in images]
    repeated = [router_request(images[0], strategy=common_pb2.STRATEGY_SINGLE, model_name=model)]

    def triton_call(name: str, client: triton_aio.InferenceServerClient = direct) -> Callable[[int], Awaitable[None]]:
        async def call(index: int) -> None:
            tensor = InferInput("IMAGE", [1, 64], "FP32")
            tensor.set_data_from_numpy(images[index % len(images)][None, :])
            await client.infer(name, [tensor], client_timeout=30)

        return call

    def router_call(prepared: list[router_service_pb2.InferRequest], suite: Suite) -> Callable[[int], Awaitable[None]]:
        router = router_service_pb2_grpc.RouterServiceStub(channels[id(suite)])

        async def call(index: int) -> None:
            await router.Infer(prepared[index % len(prepared)], timeout=30)

        return call

    requests_of = {CASCADE: cascade, EMBEDDED_CASCADE: cascade, HIT: repeated}
    rows = []
    for concurrency in levels:
        for path, suite in through.items():
            if isinstance(suite, BareProxy):
                call = triton_call(model, proxies[id(suite)])
            elif path == DIRECT:
                call = triton_call(model)
            elif path == BLS:
                call = triton_call("digits_cascade_bls")
            else:
                call = router_call(requests_of.get(path, single), suite)
            await measure(call, warmup, concurrency)
            print(f"  {path} at concurrency {concurrency} ({requests} requests) ...", flush=True)
            roles = processes_of(suite, triton, services=path not in (DIRECT, BLS))
            before = cpu_seconds(roles)
            latencies, wall = await measure(call, requests, concurrency)
            after = cpu_seconds(roles)
            rows.append(
                {
                    "path": path,
                    "concurrency": concurrency,
                    "p50": float(np.percentile(latencies, 50)),
                    "p99": float(np.percentile(latencies, 99)),
                    "throughput": requests / wall,
                    "latencies": latencies,
                    "cpu_us": {role: cpu_spent(role, before, after) / requests * 1e6 for role in roles},
                }
            )
    for channel in channels.values():
        await channel.close()
    for client in [direct, *proxies.values()]:
        await client.close()
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
        if r["path"] in (ROUTER, EMBEDDED, HIT, PROXY) and (DIRECT, r["concurrency"]) in by_path
    ]
    return "\n".join([*lines, "", "; ".join(added), "", cpu_table(rows)])


def cpu_table(rows: list[dict]) -> str:
    """CPU time per request by process, and the throughput it allows when every core is busy."""
    cores = os.cpu_count() or 1
    lines = [
        f"CPU time per request, µs, by process ({cores} cores; '-' where the path has no such process):",
        "",
        f"| path | concurrency | {' | '.join(ROLES)} | total | req/s {cores} busy cores allow | measured req/s |",
        f"| --- | ---: | {' | '.join('---:' for _ in ROLES)} | ---: | ---: | ---: |",
    ]
    for row in rows:
        spent = row["cpu_us"]
        total = sum(spent.values())
        cells = " | ".join(f"{spent[role]:.0f}" if role in spent else "-" for role in ROLES)
        lines.append(
            f"| {row['path']} | {row['concurrency']} | {cells} | {total:.0f} | {cores / total * 1e6:.0f} | {row['throughput']:.0f} |"
        )
    return "\n".join(lines)


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


def plot_cpu(rows: list[dict], path: pathlib.Path) -> None:
    """Draws, at the highest concurrency, each path's CPU time per request as bars stacked by process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    level = max(r["concurrency"] for r in rows)
    shown = [r for r in rows if r["concurrency"] == level]
    figure, axis = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    labels = [r["path"] for r in shown]
    left = np.zeros(len(shown))
    for role in ROLES:
        spent = np.array([r["cpu_us"].get(role, 0.0) for r in shown])
        axis.barh(labels, spent, left=left, label=role)
        left += spent
    axis.invert_yaxis()
    axis.set_xlabel("CPU time per request (µs, all processes)")
    axis.set_title(f"Where each request's CPU goes, concurrency {level}")
    axis.grid(True, axis="x", alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_linear")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)

    def measured(through: dict[str, Suite | BareProxy], triton: Suite) -> list[dict]:
        return asyncio.run(run(through, triton, args.model, args.requests, args.concurrency, args.warmup))

    @contextlib.contextmanager
    def embedding(beside: Suite, log_dir: pathlib.Path, env: dict[str, str]) -> Iterator[Suite]:
        """Another suite on ``beside``'s Triton whose router runs the orchestrator inside the
        router's process; that suite's orchestrator process is stopped."""
        with Suite(ports=SuitePorts.free(), triton_url=beside.triton_url, log_dir=log_dir, env={**env, "INFERSCALE_EMBED_ORCHESTRATOR": "on"}) as suite:
            suite.kill_service("orchestrator")
            yield suite

    with tempfile.TemporaryDirectory(prefix="inferscale-overhead-") as scratch:
        repository = pathlib.Path(scratch) / "model_repository"
        shutil.copytree(REPO_ROOT / "model_repository", repository, ignore=shutil.ignore_patterns("__pycache__"))
        (repository / "digits_cascade_bls" / "1").mkdir(parents=True)
        (repository / "digits_cascade_bls" / "config.pbtxt").write_text(BLS_CONFIG)
        (repository / "digits_cascade_bls" / "1" / "model.py").write_text(BLS_MODEL)
        logs = RESULTS / "logs" / "router_overhead"
        sink_port = free_port()
        sink = multiprocessing.get_context("spawn").Process(target=serve_sink, args=(sink_port,), daemon=True)
        sink.start()
        traced = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        }
        untraced = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
        try:
            print("Starting the suite on the embedded Triton, tracing off, with two embedding routers and two bare proxies beside it ...", flush=True)
            with (
                Suite(ports=SuitePorts.free(), log_dir=logs / "untraced", model_repository=repository, env=untraced) as suite,
                embedding(suite, logs / "embedded", untraced) as embedded,
                embedding(suite, logs / "recorded", {"OTEL_TRACES_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "always_on"}) as recorded,
                bare_proxy(suite, untraced) as proxy,
                bare_proxy(suite, traced) as traced_proxy,
            ):
                rows = measured(
                    {
                        DIRECT: suite,
                        PROXY: proxy,
                        TRACED_PROXY: traced_proxy,
                        ROUTER: suite,
                        EMBEDDED: embedded,
                        HIT: suite,
                        BLS: suite,
                        CASCADE: suite,
                        EMBEDDED_CASCADE: embedded,
                        RECORDED_EMBEDDED: recorded,
                    },
                    suite,
                )
            print("Starting a second suite that traces every request ...", flush=True)
            sampling = {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
            with (
                Suite(ports=SuitePorts.free(), log_dir=logs / "traced", model_repository=repository, env=traced) as suite,
                embedding(suite, logs / "traced-embedded", traced) as embedded,
                embedding(suite, logs / "sampled-embedded", sampling) as sampled,
            ):
                rows += measured({TRACED: suite, TRACED_EMBEDDED: embedded, SAMPLED_EMBEDDED: sampled}, suite)
        finally:
            sink.terminate()
    report = table(rows, args.model)
    print("\n" + report)
    (RESULTS / "router_overhead.md").write_text(report + "\n")
    plot(rows, RESULTS / "router_overhead.png")
    plot_cpu(rows, RESULTS / "router_overhead_cpu.png")
    print(f"\nwrote {RESULTS / 'router_overhead.md'}, {RESULTS / 'router_overhead.png'} and {RESULTS / 'router_overhead_cpu.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
