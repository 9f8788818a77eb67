"""The main job: brings the whole suite up on the embedded Triton and runs a short demonstration workload.

``python -m inferscale.demo`` (``make run``) prints every request with its escalation steps, a
few repeats served from the cache, one malformed request and its clear error, a few text
commands served from the semantic cache (or, for the opposite command, not), a few ARC-AGI tasks
(from ../shared/arc, when it is there) through the cascade of ARC solvers, a few GSM8K problems
(from ../shared/gsm8k, when it is there) through the cascade of language models, streamed as
they are generated, and what the monitor counted. ``--serve`` keeps the suite up afterwards for
your own clients.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import sys
import textwrap
import time
import urllib.request

import grpc
import numpy as np

from inferscale.arc.served import dearest_cost
from inferscale.arc.tasks import SHARED_ARC, load_tasks
from inferscale.gsm8k import DEFAULT_SHOTS, SHARED_GSM8K, TEST_DEV_FILE, TRAIN_FILE, read_problems, same_number, short_examples_context
from inferscale.models.digits import load_split
from inferscale.models.intents import INTENTS
from inferscale.request_inputs import arc_task_tensor, text_prompt, text_tensor
from inferscale.steps import ANSWERED
from inferscale.stream_view import StreamView
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    monitor_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)


def describe_steps(response: router_service_pb2.InferResponse) -> str:
    """Renders the escalation steps on one line: model, confidence and decision of each."""
    parts = []
    for step in response.steps:
        decision = common_pb2.Decision.Name(step.decision).removeprefix("DECISION_").lower()
        if step.decision in ANSWERED:
            parts.append(f"{step.model.name} v{step.model.version} {step.answer.confidence:.2f} {decision}")
        else:
            parts.append(f"{step.model.name} {decision}")  # it did not run: no answer to show
    return " -> ".join(parts)


def run_workload(suite: Suite, requests: int, repeats: int) -> None:
    """Sends the workload through the router and prints each answer and how it was made."""
    _, _, images, labels = load_split()
    order = np.random.default_rng(7).permutation(len(images))[:requests]
    picked = list(order) + list(order[:repeats])
    right = 0
    cost = 0.0
    hits = 0
    with suite.channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        print(f"\n{'#':>3} {'truth':>5} {'answer':>6}  {'cost':>5} {'ms':>6}  {'cache':<5}  steps")
        for number, index in enumerate(picked, start=1):
            started = time.perf_counter()
            response = router.Infer(
                router_service_pb2.InferRequest(
                    request_id=f"demo-{number}",
                    task="digits",
                    inputs=[from_numpy("IMAGE", images[index : index + 1].astype(np.float32))],
                ),
                timeout=30,
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            hit = response.cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
            right += int(response.answer.label == str(labels[index]))
            cost += response.total_cost
            hits += int(hit)
            print(
                f"{number:>3} {labels[index]:>5} {response.answer.label:>6}  {response.total_cost:>5.1f} "
                f"{elapsed_ms:>6.1f}  {'L4' if hit else '-':<5}  {describe_steps(response)}"
                f"  trace {response.trace_id[:8]}"
            )
        top_cost = max((s.cost for s in response.plan.steps), default=0.0)
        print(
            f"\n{right}/{len(picked)} right, compute {cost:.1f} units in all, {hits} served from the L4 cache "
            f"(the top tier alone would have spent {top_cost * len(picked):.1f})"
        )
        print("\nA malformed request gets a clear status and changes nothing:")
        try:
            router.Infer(
                router_service_pb2.InferRequest(
                    task="digits",
                    inputs=[common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=b"\0" * 10)],
                ),
                timeout=10,
            )
        except grpc.RpcError as error:
            print(f"  {error.code().name}: {error.details()}")


SEMANTIC_DEMO = (
    "turn on the kitchen lights",
    "TURN ON THE KITCHEN LIGHTS",  # the same words: served from the semantic cache (L1)
    "turn off the kitchen lights",  # a near neighbour (cosine 0.90) with another answer: not served
    "what is the weather like today",
    "what's the weather like today",  # cosine above the task's 0.98: served from L1
)


def run_semantic_demo(suite: Suite) -> None:
    """Sends a few smart-home commands of the intents task: text embedded on Triton, near neighbours served from L1."""
    print("\nThe intents task: text embedded on Triton (all-MiniLM-L6-v2), looked up in the semantic cache:")
    with suite.channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        for text in SEMANTIC_DEMO:
            response = router.Infer(
                router_service_pb2.InferRequest(task="intents", inputs=[text_tensor(text)]), timeout=30
            )
            intent = INTENTS[int(response.answer.label)]
            if response.cache_level == common_pb2.CACHE_LEVEL_L1_SEMANTIC:
                served = f"L1, similarity {response.semantic_similarity:.3f}"
            elif response.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED:
                served = "computed"
            else:
                served = common_pb2.CacheLevel.Name(response.cache_level)
            print(f"  {text!r:<34} -> {intent:<12} {served:<24} cost {response.total_cost:5.1f}")


# ARC-AGI-1 training tasks of different families: a fractal, a colour substitution, a crop, hole
# filling, a mirrored tiling, and one no solver here solves.
ARC_DEMO = ("007bbfb7", "0d3d703e", "1cf80156", "00d62c1b", "3af2c5a8", "025d127b")


def run_arc_demo(suite: Suite) -> None:
    """Sends a few ARC tasks through the cascade of ARC solvers: each stops at the first that
    reproduces every training pair; the hidden answer is read only to print whether it was right."""
    folder = SHARED_ARC / "arc-agi-1" / "training"
    if not folder.is_dir():
        print(f"\nARC-AGI: skipped, no task data at {folder}")
        return
    print("\nARC-AGI tasks through the cascade of ARC solvers (stop at the first exact reproduction of the training pairs):")
    tasks = [t for t in load_tasks(folder) if t.id in ARC_DEMO]
    # The budget of the dearest solver alone, as the ARC benchmark holds its strategies to.
    budget = dearest_cost(suite.model_repository)
    with suite.channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        for task in tasks:
            response = router.Infer(
                router_service_pb2.InferRequest(
                    task="arc", inputs=[arc_task_tensor(task)], confidence_threshold=1.0, cost_ceiling=budget
                ),
                timeout=120,
            )
            answer = [list(row) for row in task.test[0].output or ()]
            attempts = [json.loads(a.label) for a in [response.answer, *response.alternatives][:2]]
            verdict = "right" if answer in attempts else "not solved"
            print(f"  {task.id}  {verdict:<10} cost {response.total_cost:6.1f}  {describe_steps(response)}")


# GSM8K: a few test-dev problems, with short train solutions as few-shot turns, as the benchmark
# asks them. Generation runs at 30 to 140 tokens a second on an idle machine here (a few when it
# is busy), so the answers stay short and the problems few: the part takes a minute or two.
GSM8K_PROBLEMS = 3
GSM8K_MAX_TOKENS = 200
# A problem's whole cascade, two generations and their prompts on a busy CPU: minutes, not the
# default 30 s.
GSM8K_TIMEOUT_SECONDS = 600
# The thresholds the monitor's learner chose on 60 train problems (benchmarks/gsm8k.py
# --calibrate 60): the least cost that matches the strongest model's accuracy there.
GSM8K_TIER_THRESHOLDS = [
    common_pb2.TierThresholds(tier=1, accept_threshold=0.97),
    common_pb2.TierThresholds(tier=2, accept_threshold=0.98),
]


def run_gsm8k_demo(suite: Suite, data: pathlib.Path = SHARED_GSM8K) -> None:
    """Sends a few GSM8K problems through the math task's cascade of language models with
    InferStream, showing each step as it starts, its tokens as they are generated, its decision,
    and the extracted answer against the reference."""
    train, test_dev = data / TRAIN_FILE, data / TEST_DEV_FILE
    if not (train.is_file() and test_dev.is_file()):
        print(f"\nGSM8K: skipped, no {TRAIN_FILE} and {TEST_DEV_FILE} at {data}")
        return
    context = short_examples_context(train)
    problems = read_problems(test_dev, GSM8K_PROBLEMS)
    print(
        "\nGSM8K problems through the cascade of language models (task math, cheapest tier first; an answer "
        "stands at confidence "
        + ", ".join(f"{t.accept_threshold:g} on tier {t.tier}" for t in GSM8K_TIER_THRESHOLDS)
        + f"), {DEFAULT_SHOTS} train problems as few-shot turns, at most {GSM8K_MAX_TOKENS} tokens each, streamed live:"
    )
    right = 0
    with suite.channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        for number, problem in enumerate(problems, start=1):
            print(textwrap.fill(problem.question, width=100, initial_indent=f"\n{number}. ", subsequent_indent="   "), flush=True)
            request = router_service_pb2.InferRequest(
                request_id=f"demo-gsm8k-{number}",
                task="math",
                strategy=common_pb2.STRATEGY_CASCADE,
                skip_cache=True,  # shown generating, never served from an earlier run's answer
                tier_thresholds=GSM8K_TIER_THRESHOLDS,
                text=text_prompt(problem.question, context, max_tokens=GSM8K_MAX_TOKENS),
            )
            view = StreamView(sys.stdout)
            started = time.perf_counter()
            try:
                for event in router.InferStream(
                    router_service_pb2.InferStreamRequest(request=request), timeout=GSM8K_TIMEOUT_SECONDS
                ):
                    view.show(event)
            except grpc.RpcError as error:
                print(f"\nGSM8K: stopped, the router answered {error.code().name}: {error.details()}")
                return
            response = view.response
            if response is None:
                print("\nGSM8K: stopped, the router ended the stream without a response")
                return
            correct = same_number(response.answer.label, problem.reference)
            right += int(correct)
            tokens = sum(step.usage.output_tokens for step in response.steps)
            print(
                f"  answer {response.answer.label or '(none)'}, reference {problem.reference}: "
                f"{'right' if correct else 'wrong'}   {tokens} tokens generated, cost {response.total_cost:g}, "
                f"{time.perf_counter() - started:.1f} s"
            )
    print(f"\nGSM8K: {right}/{len(problems)} right")


def print_monitor(suite: Suite) -> None:
    """Prints what the monitor counted, from its RPC and from its Prometheus page."""
    time.sleep(0.5)  # events travel in batches every 100 ms
    with suite.channel("monitor") as channel:
        stats = monitor_service_pb2_grpc.MonitorServiceStub(channel).GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5)
    print(f"\nThe monitor counted {stats.requests} requests and {stats.events_recorded} events:")
    for model in stats.models:
        print(
            f"  tier {model.tier} {model.model.name:<16} steps {model.steps:>3}  accepted {model.accepted:>3}  "
            f"escalated {model.escalated:>3}  mean {model.mean_latency_ms:6.2f} ms  cost {model.total_cost:7.1f}"
        )
    for level in stats.cache_levels:
        print(f"  {common_pb2.CacheLevel.Name(level.level)}: {level.hits} hits, {level.misses} misses")
    with urllib.request.urlopen(suite.metrics_url, timeout=5) as page:
        lines = [line for line in page.read().decode().splitlines() if line.startswith("inferscale_requests_total")]
    print(f"  {suite.metrics_url}: {'; '.join(lines)}")


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="distinct digits to send (default 30)")
    parser.add_argument("--repeats", type=int, default=6, help="of them, how many to send again (default 6)")
    parser.add_argument("--serve", action="store_true", help="keep the suite up afterwards until Ctrl-C")
    parser.add_argument("--free-ports", action="store_true", help="use free ports instead of the defaults")
    args = parser.parse_args()
    log_dir = REPO_ROOT / "results" / "logs"
    suite = Suite(ports=SuitePorts.free() if args.free_ports else SuitePorts(), log_dir=log_dir)
    print("Starting Triton (embedded, from the nvidia-pytriton wheel) and the four services ...", flush=True)
    started = time.perf_counter()
    with suite:
        print(f"Suite up in {time.perf_counter() - started:.1f} s; logs in {log_dir.relative_to(pathlib.Path.cwd()) if log_dir.is_relative_to(pathlib.Path.cwd()) else log_dir}")
        for service in ("router", "orchestrator", "cache", "monitor"):
            print(f"  {service:<12} {suite.address(service)}")
        print(f"  {'triton':<12} {suite.triton_url}   metrics {suite.metrics_url}")
        print(f"  every call needs a token; this suite's are in {log_dir / 'credentials.env'} (for the CLI: `set -a; . FILE`)")
        run_workload(suite, args.requests, args.repeats)
        run_semantic_demo(suite)
        run_arc_demo(suite)
        run_gsm8k_demo(suite)
        print_monitor(suite)
        if args.serve:
            print("\nServing until Ctrl-C ...", flush=True)
            stop_signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
            signal.sigwait(stop_signals)
    print("Suite stopped.")


if __name__ == "__main__":
    main()
