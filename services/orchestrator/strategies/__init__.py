"""The strategies the orchestrator runs, one module each, by the plan's ``Strategy`` value.

Every strategy is an ``async def run(runner, execution, models) -> ExecuteResponse`` over the
shared ``StepRunner``: adding a strategy is adding a module and a row here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import Execution, StepRunner
from services.orchestrator.strategies import (
    best_of_n,
    cascade,
    ensemble,
    expert,
    search,
    self_consistency,
)

Strategy = Callable[
    [StepRunner, Execution, list[RegisteredModel | None]], Awaitable[orchestrator_service_pb2.ExecuteResponse]
]

STRATEGIES: dict[int, Strategy] = {
    common_pb2.STRATEGY_SINGLE: cascade.run,
    common_pb2.STRATEGY_CASCADE: cascade.run,
    common_pb2.STRATEGY_REFINEMENT: cascade.run,
    common_pb2.STRATEGY_ENSEMBLE: ensemble.run,
    common_pb2.STRATEGY_EXPERT: expert.run,
    common_pb2.STRATEGY_SEARCH: search.run,
    common_pb2.STRATEGY_SELF_CONSISTENCY: self_consistency.run,
    common_pb2.STRATEGY_BEST_OF_N: best_of_n.run,
}
