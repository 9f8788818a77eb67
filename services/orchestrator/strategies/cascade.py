"""A cascade (and its one-step and refinement forms): tier after tier until one is confident enough.

Each step's answer is accepted or escalated by the step's confidence bands, the request's
complexity and the expected gain per cost of the next tier; a step past the deadline or the cost
ceiling is not started. In a refinement plan each step also receives the previous step's output.
"""

from __future__ import annotations

from inferscale.errors import ModelFailed, Unavailable
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.escalation import NextTier, decide
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import Execution, StepRunner, not_run, ran, skipped


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Runs the plan's steps in order, stopping at the first accepted answer."""
    plan, response = execution.plan, execution.response
    complexity = plan.complexity
    skip: dict[int, str] = {}
    if plan.complexity_model:
        score = await runner.analyze(execution)
        if score is not None:
            complexity = max(complexity, score)
            tiers = sorted({model.tier for model in models if model is not None})
            if plan.skip_complexity and score >= plan.skip_complexity and len(tiers) > 1:
                reason = f"complexity {score:.3f} >= {plan.skip_complexity:.3f}: the cheapest tier is skipped"
                skip = {i: reason for i, model in enumerate(models) if model is not None and model.tier == tiers[0]}
    runnable = [index for index, model in enumerate(models) if model is not None and index not in skip]
    best: tuple[common_pb2.EscalationStep, list[common_pb2.InferTensor]] | None = None
    accepted = False
    # In a refinement plan each step refines the answer of the step before it.
    previous_output: common_pb2.InferTensor | None = None
    refining = plan.strategy == common_pb2.STRATEGY_REFINEMENT
    for index, (step, model) in enumerate(zip(plan.steps, models, strict=True)):
        if model is None:
            runner.record(execution, skipped(index, step))
            continue
        if index in skip:
            runner.record(execution, not_run(index, step, common_pb2.DECISION_SKIPPED, skip[index]))
            continue
        if best is not None:
            why = runner.stop_reason(execution, model)
            if why:
                runner.record(
                    execution,
                    not_run(index, step, common_pb2.DECISION_STOPPED, f"{why}; the best answer so far is returned"),
                )
                break
        later = [models[i] for i in runnable if i > index]
        next_model = later[0] if later else None
        next_tier = None
        if next_model is not None:
            expected = runner.recent.mean_confidence(next_model.name)
            # Before a tier has answered anything, assume it is worth trying.
            next_tier = NextTier(cost=next_model.cost, expected_accuracy=1.0 if expected is None else expected)
        with runner.step(execution, index, step, model) as span:
            try:
                call = await runner.call(
                    execution, model, runner.timeout(execution), previous_output if refining else None
                )
            except (ModelFailed, Unavailable) as error:
                if best is None and next_model is None:
                    raise
                # A tier that fails leaves the others: the next tier, or the best answer so far.
                failed = not_run(index, step, common_pb2.DECISION_FAILED, f"model {model.name} failed: {error}")
                runner.record(execution, failed, span)
                continue
            decision = decide(
                call.answer.confidence,
                step.accept_threshold,
                is_last=index == runnable[-1],
                escalate_threshold=step.escalate_threshold if step.escalate_threshold > 0 else None,
                complexity=complexity,
                next_tier=next_tier,
                min_gain_per_cost=runner.min_gain_per_cost,
            )
            reported = ran(
                index,
                step,
                call,
                common_pb2.DECISION_ACCEPT if decision.accept else common_pb2.DECISION_ESCALATE,
                decision.reason,
            )
            runner.record(execution, reported, span)
        previous_output = call.output
        if best is None or decision.accept or call.answer.confidence > best[0].answer.confidence:
            best = (reported, list(call.result.outputs))
        if decision.accept:
            accepted = True
            break
    # A step past the last one run whose model left routing is reported too: its absence made
    # an earlier step the last, accepted whatever its confidence, so the answer is not the plan's.
    reached = {s.index for s in response.steps}
    for index, model in enumerate(models):
        if model is None and index not in reached:
            runner.record(execution, skipped(index, plan.steps[index]))
    if best is None:
        raise ModelFailed("no step of the plan produced an answer")
    if not accepted:
        # Stopped or failed past the last answer: the most confident answer so far stands.
        for reported_step in response.steps:
            if reported_step.index == best[0].index:
                reported_step.decision = common_pb2.DECISION_ACCEPT
                reported_step.reason += "; accepted as the best answer so far"
    response.answer.CopyFrom(best[0].answer)
    response.outputs.extend(best[1])
    return response
