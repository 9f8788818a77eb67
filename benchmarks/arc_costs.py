"""What each ARC solver costs, measured: CPU time per request, and the program search's throughput.

    python -m benchmarks.arc_costs [--folder arc-agi-1/training] [--data DIR] [--limit N]

Runs every solver the model repository serves (each ``model_repository/arc_*`` config's "solver"
parameter) on every test input of the folder's tasks, in process, without Triton: one request's
work, timed as the CPU time of this process. The solvers take turns on each test input (the order
rotating from one input to the next), so that a noisy neighbour slows them all alike. Prints, and
writes to results/arc/costs.md:

- each solver's mean CPU milliseconds per request, its ratio to ``arc_geometry``'s (the unit of
  ``inferscale.cost``), the cost its config declares, and that ratio rounded: what the config
  should say;
- for the program search at each depth: the programs it tried per request (the distinct programs
  it ran on every input, and those it set aside after the training inputs because none of their
  results had its output's size), and how many it tried per second.

Writes results/arc/costs.png: each solver's CPU time per request, the configured cost beside it.
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import time

from rich.progress import Progress

from inferscale.arc import programs
from inferscale.arc.catalogue import SOLVERS
from inferscale.arc.served import Served, served_solvers
from inferscale.arc.tasks import SHARED_ARC, load_tasks
from inferscale.suite import REPO_ROOT

RESULTS = REPO_ROOT / "results" / "arc"
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
UNIT = "arc_geometry"


def cpu_seconds(work, *args):  # type: ignore[no-untyped-def]
    """The CPU time ``work(*args)`` took in this process, and what it returned."""
    started = time.process_time()
    result = work(*args)
    return time.process_time() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="arc-agi-1/training", help="task folder under --data")
    parser.add_argument("--data", type=pathlib.Path, default=SHARED_ARC, help="where the ARC folders lie (default ../shared/arc)")
    parser.add_argument("--limit", type=int, help="only the first N tasks (a quick look)")
    args = parser.parse_args()
    tasks = list(load_tasks(args.data / args.folder))[: args.limit]
    requests = [([(p.input, p.output) for p in task.train], test.input) for task in tasks for test in task.test]
    if not requests:
        parser.error(f"no test inputs in {args.data / args.folder}")
    served = served_solvers(MODEL_REPOSITORY)
    if not any(s.model == UNIT for s in served):
        parser.error(f"{UNIT}, the unit of cost, is not in {MODEL_REPOSITORY}")
    seconds = {s.model: 0.0 for s in served}
    depths = sorted(int(s.solver.removeprefix("programs_")) for s in served if s.solver.startswith("programs_"))
    search_seconds = dict.fromkeys(depths, 0.0)
    runs = dict.fromkeys(depths, 0)
    pruned = dict.fromkeys(depths, 0)
    with Progress(transient=True) as progress:
        bar = progress.add_task(f"{args.folder}: {len(requests)} test inputs", total=len(requests))
        for index, (train, test_input) in enumerate(requests):
            turn = index % len(served)
            for solver in itertools.chain(served[turn:], served[:turn]):
                spent, _ = cpu_seconds(SOLVERS[solver.solver], train, test_input)
                seconds[solver.model] += spent
            for depth in depths:
                spent, searched = cpu_seconds(programs.search, train, test_input, depth)
                search_seconds[depth] += spent
                runs[depth] += searched.programs
                pruned[depth] += searched.pruned
            progress.advance(bar)
            if not progress.console.is_terminal and (index + 1) % max(1, len(requests) // 10) == 0:
                print(f"{index + 1}/{len(requests)} test inputs", flush=True)
    count = len(requests)
    unit = seconds[UNIT] / count
    lines = [
        f"### ARC solver costs on {args.folder}: {len(tasks)} tasks, {count} test inputs, CPU time per request",
        "",
        "| model | ms per request | x arc_geometry | cost declared | cost measured (rounded) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for solver in served:
        mean = seconds[solver.model] / count
        lines.append(f"| {solver.model} | {1000 * mean:.1f} | {mean / unit:.1f} | {solver.cost:g} | {max(1, round(mean / unit))} |")
    lines += [
        "",
        "| program search | ms per request | programs tried per request | of which pruned by size | programs tried per second |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for depth in depths:
        lines.append(
            f"| depth {depth} | {1000 * search_seconds[depth] / count:.1f} | {(runs[depth] + pruned[depth]) / count:.0f} | "
            f"{pruned[depth] / count:.0f} | {(runs[depth] + pruned[depth]) / search_seconds[depth]:.0f} |"
        )
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "costs.md").write_text(report + "\n")
    plot(served, {m: s / count for m, s in seconds.items()}, unit, RESULTS / "costs.png", args.folder)
    return 0


def plot(served: list[Served], per_request: dict[str, float], unit: float, path: pathlib.Path, folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    names = [s.model.removeprefix("arc_") for s in served]
    positions = range(len(served))
    axis.bar([p - 0.2 for p in positions], [per_request[s.model] / unit for s in served], width=0.4, label="measured (x arc_geometry)")
    axis.bar([p + 0.2 for p in positions], [s.cost for s in served], width=0.4, label="declared cost")
    axis.set_xticks(list(positions), names, rotation=30, ha="right", fontsize=8)
    axis.set_yscale("log")
    axis.set_ylabel("cost units (log scale)")
    axis.set_title(f"ARC solvers' CPU per request on {folder}, 1 unit = {1000 * unit:.1f} ms")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
