"""ARC-AGI through InferScale: each solver alone against the multi-model strategies, at one budget.

    python -m benchmarks.arc [--folders arc-agi-1/evaluation-dev arc-agi-2/training] [--data DIR]
                             [--limit N] [--concurrency 2]

Reads tasks in the official JSON format from ``--data`` (default ``../shared/arc``; never copied),
starts the suite on the embedded Triton, and sends every test input of every task through the
router's public gRPC API as task ``arc``: the training pairs and that one test input, never its
answer. Each test input is asked of every row below.

Rows:
- each solver alone (``STRATEGY_SINGLE``), its two attempts its own two best candidates;
- the multi-model strategies, each held by the request's ``cost_ceiling`` to the budget of the
  most expensive solver alone (``--budget``, default arc_programs_3's cost): a cascade that
  accepts a candidate reproducing every training pair, an ensemble (best score, two attempts from
  the two best distinct answers), and an adaptive search of up to 16 calls (each solver once,
  cheapest first, then as its tree decides, while the budget lasts);
- the ensemble of every solver without a ceiling, for reference.

Scoring is the ARC Prize's (``inferscale.arc.scoring``): two attempts per test input
(``answer``, then ``alternatives[0]``), exact grids only, a task's score the fraction of its
test inputs solved. Beside it, clearly apart: oracle pass@k, right if any of the first k
distinct candidates the request saw (answer, alternatives, every step's candidates) is right.

Compute is counted in the solvers' cost units (``inferscale.cost``, each solver's mean compute
per task relative to arc_geometry's, measured on arc-agi-1/training: 1 unit is about 1.4 ms of
one core here): the sum over the model calls a request made. Every request skips the caches, so
that every call runs on Triton and the cost ceiling holds each strategy to the compute it really
spends. Writes results/arc/<folder>.md (table), .png (solved versus compute) and .json (every
request's attempts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from dataclasses import dataclass, field

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.arc_costs import MODEL_REPOSITORY
from benchmarks.plots import save_log_x
from inferscale.arc.scoring import ATTEMPTS, oracle_pass_at_k, set_score, task_score
from inferscale.arc.served import dearest_cost
from inferscale.arc.tasks import SHARED_ARC, Grid, Task, load_tasks, to_grid
from inferscale.steps import ANSWERED
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import bytes_tensor
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc

RESULTS = REPO_ROOT / "results" / "arc"
SOLVERS = (
    "arc_geometry",
    "arc_programs_1",
    "arc_tiling",
    "arc_objects",
    "arc_enclosure",
    "arc_neighbourhood",
    "arc_object_transforms",
    "arc_counting",
    "arc_rays",
    "arc_partitions",
    "arc_stamps",
    "arc_programs_2",
    "arc_programs_3",
)
FOLDERS = ("arc-agi-1/evaluation-dev", "arc-agi-2/training")
# The budget the multi-model rows are held to: the dearest solver's cost (arc_programs_3's), as
# the model repository declares it.
BUDGET = dearest_cost(MODEL_REPOSITORY)
SEARCH_CALLS = 16
ORACLE_K = 5
REQUEST_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Row:
    """One row of the comparison: its name, its kind, and the request fields that select it."""

    name: str
    kind: str
    fields: dict = field(default_factory=dict)


def rows(budget: float) -> list[Row]:
    single = [Row(f"{name} alone", "single", {"strategy": common_pb2.STRATEGY_SINGLE, "model_name": name}) for name in SOLVERS]
    # A candidate that reproduces every training pair (score 1.0) is the only one worth stopping at.
    exact = {"confidence_threshold": 1.0}
    return [
        *single,
        Row(f"cascade, budget {budget:g}", "cascade", {"strategy": common_pb2.STRATEGY_CASCADE, "cost_ceiling": budget, **exact}),
        Row(f"ensemble, budget {budget:g}", "ensemble", {"strategy": common_pb2.STRATEGY_ENSEMBLE, "cost_ceiling": budget}),
        Row(
            f"search {SEARCH_CALLS} calls, budget {budget:g}",
            "search",
            {"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": SEARCH_CALLS, "cost_ceiling": budget, **exact},
        ),
        Row("ensemble of every solver, no budget", "reference", {"strategy": common_pb2.STRATEGY_ENSEMBLE}),
    ]


@dataclass
class Outcome:
    """What one row answered for one test input."""

    attempts: list[Grid]
    candidates: list[Grid]
    compute: float
    error: str = ""


def request_for(task: Task, index: int) -> str:
    """The task as sent: its training pairs and the one test input, without its answer."""
    return json.dumps(
        {
            "train": [{"input": p.input, "output": p.output} for p in task.train],
            "test": [{"input": task.test[index].input}],
        }
    )


def outcome_of(response: router_service_pb2.InferResponse) -> Outcome:
    def grid(label: str) -> Grid:
        return to_grid(json.loads(label), "answer")

    attempts = [grid(a.label) for a in [response.answer, *response.alternatives][:ATTEMPTS]]
    seen: dict[str, None] = {}
    for answer in [response.answer, *response.alternatives]:
        seen.setdefault(answer.label)
    cost_of = {i: step.cost for i, step in enumerate(response.plan.steps)}
    compute = 0.0
    for step in response.steps:
        if step.decision in ANSWERED:
            compute += cost_of.get(step.index, 0.0)
            for answer in [step.answer, *step.alternatives]:
                seen.setdefault(answer.label)
    return Outcome(attempts, [grid(label) for label in seen], compute)


async def ask(router: router_service_pb2_grpc.RouterServiceStub, task: Task, index: int, row: Row) -> Outcome:
    request = router_service_pb2.InferRequest(
        request_id=f"{task.id}/{index}/{row.name}",
        task="arc",
        inputs=[bytes_tensor("TASK", [request_for(task, index)])],
        skip_cache=True,
        **row.fields,
    )
    try:
        return outcome_of(await router.Infer(request, timeout=REQUEST_TIMEOUT_S))
    except grpc.aio.AioRpcError as error:
        # A failed request answers nothing: it scores 0 and is listed, never retried into a score.
        return Outcome([], [], 0.0, f"{error.code().name}: {error.details()}")


async def run_folder(router, tasks: list[Task], table_rows: list[Row], concurrency: int, label: str) -> dict[str, dict[str, list[Outcome]]]:  # type: ignore[no-untyped-def]
    """Every row for every test input; returns outcomes[row][task id] in test-input order."""
    outcomes: dict[str, dict[str, list[Outcome]]] = {row.name: {t.id: [None] * len(t.test) for t in tasks} for row in table_rows}  # type: ignore[misc]
    inputs = [(task, index) for task in tasks for index in range(len(task.test))]
    queue: asyncio.Queue = asyncio.Queue()
    for item in inputs:
        queue.put_nowait(item)
    progress = Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[summary]}")
    )
    # Piped to a log, a bar would show only at the end: a line every twentieth of the way instead.
    every = 0 if progress.console.is_terminal else max(1, len(inputs) // 20)
    done = 0
    solved: dict[str, int] = {row.name: 0 for row in table_rows}

    async def worker() -> None:
        while not queue.empty():
            task, index = queue.get_nowait()
            for row in table_rows:
                outcome = await ask(router, task, index, row)
                outcomes[row.name][task.id][index] = outcome
                solved[row.name] += task.test[index].output in outcome.attempts
            best_single = max(solved[r.name] for r in table_rows if r.kind == "single")
            best_multi = max(solved[r.name] for r in table_rows if r.kind in ("cascade", "ensemble", "search"))
            summary = f"test inputs solved: best solver {best_single}, best strategy {best_multi}"
            progress.update(bar, advance=1, summary=summary)
            nonlocal done
            done += 1
            if every and (done % every == 0 or done == len(inputs)):
                print(f"{label}: {done}/{len(inputs)} test inputs, {summary}", flush=True)

    with progress:
        bar = progress.add_task(label, total=len(inputs), summary="")
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def summarize(tasks: list[Task], table_rows: list[Row], outcomes: dict) -> list[dict]:  # type: ignore[type-arg]
    summary = []
    for row in table_rows:
        per_task = outcomes[row.name]
        scores = [task_score(t, [o.attempts for o in per_task[t.id]]) for t in tasks]
        oracle = [oracle_pass_at_k(t, [o.candidates for o in per_task[t.id]], ORACLE_K) for t in tasks]
        all_outcomes = [o for t in tasks for o in per_task[t.id]]
        summary.append(
            {
                "name": row.name,
                "kind": row.kind,
                "solved": sum(scores),
                "score": set_score(scores),
                "oracle": sum(oracle),
                "compute": sum(o.compute for o in all_outcomes) / len(all_outcomes),
                "errors": sum(1 for o in all_outcomes if o.error),
                "solved_ids": [t.id for t, s in zip(tasks, scores, strict=True) if s > 0],
            }
        )
    return summary


def table(folder: str, tasks: list[Task], summary: list[dict], budget: float) -> str:
    singles = [r for r in summary if r["kind"] == "single"]
    multi = [r for r in summary if r["kind"] in ("cascade", "ensemble", "search")]
    best_single = max(singles, key=lambda r: (r["solved"], -r["compute"]))
    best_multi = max(multi, key=lambda r: (r["solved"], -r["compute"]))
    # The single solvers that fit the budget (all of them at the default budget).
    affordable = [r for r in singles if r["compute"] <= budget + 1e-9]
    best_affordable = max(affordable, key=lambda r: (r["solved"], -r["compute"]))
    lines = [
        f"### {folder}: {len(tasks)} tasks, {sum(len(t.test) for t in tasks)} test inputs",
        "",
        "Official score: two attempts per test input, exact grids, a task's score the fraction of its test inputs solved "
        f"(tasks solved = the sum). Oracle pass@{ORACLE_K} is a different measure: right if any of the first "
        f"{ORACLE_K} distinct candidates the request saw is right; it is not the official score. Compute: mean cost "
        "units per test input (1 unit ≈ arc_geometry's compute per task).",
        "",
        f"| row | tasks solved (official) | score | compute units | vs best solver | oracle pass@{ORACLE_K} (not official) | failed requests |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary:
        ratio = r["solved"] / best_affordable["solved"] if best_affordable["solved"] else float("inf")
        lines.append(
            f"| {r['name']} | {r['solved']:.1f} | {r['score']:.4f} | {r['compute']:.1f} | {ratio:.2f}× | {r['oracle']:.1f} | {r['errors']} |"
        )
    ratio = best_multi["solved"] / best_affordable["solved"] if best_affordable["solved"] else float("inf")
    lines += [
        "",
        f"Best single solver within the budget of {budget:g} units: {best_affordable['name']}, {best_affordable['solved']:.1f} tasks "
        f"at {best_affordable['compute']:.1f} units. Best multi-model strategy held to that budget: {best_multi['name']}, "
        f"{best_multi['solved']:.1f} tasks at {best_multi['compute']:.1f} units: **{ratio:.2f}×** the tasks.",
    ]
    if best_single is not best_affordable:
        lines.append(f"(Best single solver overall: {best_single['name']}, {best_single['solved']:.1f} tasks.)")
    return "\n".join(lines)


def plot(folder: str, summary: list[dict], path: pathlib.Path, budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for kind, marker in (("single", "o"), ("cascade", "s"), ("ensemble", "^"), ("search", "D"), ("reference", "v")):
        chosen = [r for r in summary if r["kind"] == kind]
        if not chosen:
            continue
        axis.plot([r["compute"] for r in chosen], [r["solved"] for r in chosen], marker=marker, linestyle="", label=kind)
        # The strategies land close together and the legend names them by marker; only the
        # single solvers carry labels.
        for r in chosen if kind == "single" else ():
            label = r["name"].replace(" alone", "").replace("arc_", "")
            axis.annotate(label, (r["compute"], r["solved"]), fontsize=7, textcoords="offset points", xytext=(4, 3))
    save_log_x(
        figure,
        axis,
        path,
        xlabel="compute per test input (cost units, log scale)",
        ylabel="tasks solved (official: two attempts, exact)",
        title=f"ARC {folder}: solved vs compute, strategies ≤ {budget:g} units",
        # Lower right is where the dearest solvers lie.
        legend_loc="center right",
    )


async def run(suite: Suite, folders: list[str], data: pathlib.Path, limit: int | None, concurrency: int, budget: float) -> list[str]:
    reports = []
    table_rows = rows(budget)
    async with suite.aio_channel("router") as channel:
        router = router_service_pb2_grpc.RouterServiceStub(channel)
        for folder in folders:
            tasks = list(load_tasks(data / folder))[:limit]
            outcomes = await run_folder(router, tasks, table_rows, concurrency, folder)
            summary = summarize(tasks, table_rows, outcomes)
            report = table(folder, tasks, summary, budget)
            print("\n" + report + "\n", flush=True)
            stem = folder.replace("/", "_")
            (RESULTS / f"{stem}.md").write_text(report + "\n")
            plot(folder, summary, RESULTS / f"{stem}.png", budget)
            detail = {
                row: {tid: [{"attempts": o.attempts, "compute": o.compute, "error": o.error} for o in per] for tid, per in by_task.items()}
                for row, by_task in outcomes.items()
            }
            (RESULTS / f"{stem}.json").write_text(json.dumps({"summary": summary, "outcomes": detail}))
            reports.append(report)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), help="task folders under --data")
    parser.add_argument("--data", type=pathlib.Path, default=SHARED_ARC, help="where the ARC folders lie (default ../shared/arc)")
    parser.add_argument("--limit", type=int, help="only the first N tasks of each folder (a quick look)")
    parser.add_argument("--concurrency", type=int, default=2, help="test inputs in flight")
    parser.add_argument("--budget", type=float, default=BUDGET, help="cost ceiling of the multi-model rows")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    print("Starting the suite on the embedded Triton ...", flush=True)
    with Suite(ports=SuitePorts.free(), log_dir=RESULTS / "logs", env={"OTEL_TRACES_EXPORTER": "none"}) as suite:
        reports = asyncio.run(run(suite, args.folders, args.data, args.limit, args.concurrency, args.budget))
    (RESULTS / "summary.md").write_text("\n\n".join(reports) + "\n")
    print(f"wrote {RESULTS}/*.md, *.png and *.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
