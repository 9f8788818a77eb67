"""Expert routing: the request's complexity picks the one specialised model whose band holds it."""

from __future__ import annotations

import math

from inferscale.errors import InvalidArgument, NotFound
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.escalation import choose_expert
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import Execution, StepRunner, not_run, ran


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Scores the request's complexity, then runs the one expert whose band holds the score."""
    plan, response = execution.plan, execution.response
    experts = [(i, m) for i, m in enumerate(models) if m is not None and m.expert_high > 0]
    runner.record_skipped(execution, models)
    if not experts:
        raise NotFound("no step of the plan is a model that declares inferscale.expert_complexity")
    score = await runner.analyze(execution)
    if score is None:
        index, model = max(experts, key=lambda e: e[1].expert_high)
        reason = "no complexity score: the most capable expert answers"
    else:
        index, model = experts[choose_expert([(m.expert_low, m.expert_high) for _, m in experts], score)]
        reason = f"complexity {score:.3f}, band [{model.expert_low:g}, {model.expert_high:g}): the expert answers"
    left = plan.cost_ceiling - response.total_cost if plan.cost_ceiling else math.inf
    if model.cost > left:
        # The cost ceiling comes first: the most capable expert that still fits answers.
        affordable = [e for e in experts if e[1].cost <= left]
        if not affordable:
            raise InvalidArgument(
                f"cost_ceiling {plan.cost_ceiling} leaves {left:g} after the analysis: no expert fits"
            )
        index, model = max(affordable, key=lambda e: e[1].expert_high)
        reason += f"; over the cost ceiling {plan.cost_ceiling:g}, so {model.name}, the most capable that fits, answers"
    step = plan.steps[index]
    for other, _ in experts:
        if other != index:
            runner.record(
                execution,
                not_run(other, plan.steps[other], common_pb2.DECISION_SKIPPED, "another expert's band holds the score"),
            )
    with runner.step(execution, index, step, model) as span:
        call = await runner.call(execution, model, runner.timeout(execution))
        reported = ran(index, step, call, common_pb2.DECISION_ACCEPT, reason)
        runner.record(execution, reported, span)
    response.answer.CopyFrom(reported.answer)
    response.outputs.extend(call.result.outputs)
    return response
