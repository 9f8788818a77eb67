"""The ARC benchmark harness on real tasks from ../shared/arc, through the real suite's router."""

from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks.arc import BUDGET, rows, run_folder, summarize
from benchmarks.arc_costs import MODEL_REPOSITORY
from inferscale.arc.served import served_solvers
from inferscale.arc.tasks import SHARED_ARC, load_tasks
from inferscale.suite import Suite
from inferscale.v1 import router_service_pb2_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not SHARED_ARC.is_dir() and os.environ.get("CI") != "true",
        reason=f"the ARC data is not at {SHARED_ARC} (CI runs this with ../shared beside the checkout)",
    ),
]

# Two arc-agi-1 training tasks that different families solve: a fractal (the tiling family's)
# and a colour substitution (the geometric family's and the depth-1 program search's).
FRACTAL, COLOURS = "007bbfb7", "0d3d703e"


def test_the_harness_scores_each_row_through_the_router_and_the_strategies_combine_the_families(suite: Suite) -> None:
    tasks = [t for t in load_tasks(SHARED_ARC / "arc-agi-1" / "training") if t.id in (FRACTAL, COLOURS)]
    table_rows = rows(BUDGET)

    async def run():  # type: ignore[no-untyped-def]
        async with suite.aio_channel("router") as channel:
            return await run_folder(router_service_pb2_grpc.RouterServiceStub(channel), tasks, table_rows, 2, "test")

    summary = {r["name"]: r for r in summarize(tasks, table_rows, asyncio.run(run()))}
    assert all(r["errors"] == 0 for r in summary.values())
    assert summary["arc_tiling alone"]["solved_ids"] == [FRACTAL]
    assert COLOURS in summary["arc_geometry alone"]["solved_ids"] and FRACTAL not in summary["arc_geometry alone"]["solved_ids"]
    cascade, ensemble = f"cascade, budget {BUDGET:g}", f"ensemble, budget {BUDGET:g}"
    for strategy in (cascade, ensemble):
        assert summary[strategy]["solved"] == 2.0 and summary[strategy]["compute"] <= BUDGET
    # The cascade stops at the first exact reproduction: the colour task at tier 1. The ensemble
    # runs every solver that fits the budget: all but arc_programs_3, whose cost is the budget.
    every_other = sum(float(s.cost) for s in served_solvers(MODEL_REPOSITORY) if s.model != "arc_programs_3")
    assert summary[cascade]["compute"] < summary[ensemble]["compute"] == every_other
