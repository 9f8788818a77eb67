"""An ensemble: every member at once, their answers combined, their disagreement reported as uncertainty."""

from __future__ import annotations

import asyncio

import numpy as np

from inferscale import telemetry
from inferscale.errors import DeadlineExceeded, InvalidArgument, ModelFailed, Unavailable
from inferscale.tensors import from_numpy, to_numpy
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.aggregation import (
    Combined,
    best_score,
    mean_probability,
    plurality,
    weighted_vote,
)
from services.orchestrator.ranking import offered, offering
from services.orchestrator.registry import GRID, RegisteredModel
from services.orchestrator.step_runner import TRACER, Execution, StepRunner, annotate, not_run, ran

# The share of the time left that the members get; the rest is kept to combine and answer, so
# that a slow member costs its vote rather than the whole request.
MEMBER_SHARE_OF_DEADLINE = 0.8


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Runs every routable member in parallel and combines their answers by the plan's aggregation."""
    plan, response = execution.plan, execution.response
    member_timeout = runner.timeout(execution, share=MEMBER_SHARE_OF_DEADLINE)

    async def run_member(
        index: int, step: common_pb2.PlanStep, model: RegisteredModel
    ) -> tuple[common_pb2.EscalationStep, list[common_pb2.InferTensor] | None, np.ndarray | None]:
        with runner.step(execution, index, step, model) as span:
            try:
                call = await runner.call(execution, model, member_timeout)
            except (ModelFailed, Unavailable, DeadlineExceeded, InvalidArgument) as error:
                if isinstance(error, InvalidArgument):
                    raise  # the input is at fault, not the member: every member would refuse it
                failed = not_run(index, step, common_pb2.DECISION_FAILED, f"member failed: {error}")
                annotate(span, failed)
                return failed, None, None
            reported = ran(index, step, call, common_pb2.DECISION_CONTRIBUTED, "answered in time")
            annotate(span, reported)
            probabilities = to_numpy(call.output) if model.answer_kind != GRID else None
            return reported, list(call.result.outputs), probabilities

    members = [
        (i, step, model) for i, (step, model) in enumerate(zip(plan.steps, models, strict=True)) if model is not None
    ]
    runner.record_skipped(execution, models)
    outcomes = await asyncio.gather(*(run_member(i, step, model) for i, step, model in members))
    answered = []
    # Recorded in plan order once all have answered, whatever order they answered in.
    for (_, step, _), (reported, outputs, probabilities) in zip(members, outcomes, strict=True):
        runner.record(execution, reported)
        if reported.decision == common_pb2.DECISION_CONTRIBUTED:
            answered.append((step, reported, probabilities, outputs))
    response.steps.sort(key=lambda s: s.index)
    if not answered:
        raise Unavailable("every ensemble member failed: " + "; ".join(s.reason for s in response.steps))
    reports = [reported for _, reported, _, _ in answered]
    aggregation = plan.aggregation or common_pb2.AGGREGATION_MEAN_PROBABILITY
    combined = _combine(
        plan,
        aggregation,
        reports,
        [probabilities for _, _, probabilities, _ in answered],
        [step.weight or 1.0 for step, _, _, _ in answered],
    )
    with TRACER.start_as_current_span(
        "inferscale.aggregation",
        attributes={
            telemetry.ATTR_STRATEGY: common_pb2.Strategy.Name(plan.strategy),
            telemetry.ATTR_AGGREGATION: common_pb2.Aggregation.Name(aggregation),
            telemetry.ATTR_VOTE_ENTROPY: combined.vote_entropy,
            telemetry.ATTR_MEMBERS_FAILED: len(members) - len(answered),
            telemetry.ATTR_CONFIDENCE: combined.confidence,
        },
    ):
        pass
    response.answer.CopyFrom(common_pb2.Answer(label=combined.label, confidence=combined.confidence))
    output_name = models[answered[0][1].index].output_name  # type: ignore[union-attr]
    if combined.probabilities is not None:
        response.outputs.append(from_numpy(output_name, combined.probabilities))
    else:
        # A vote: the outputs of the member that offered the winning answer.
        response.outputs.extend(answered[offering(combined.label, reports)][3])
    response.uncertainty.CopyFrom(
        common_pb2.Uncertainty(
            vote_entropy=combined.vote_entropy,
            probability_spread=combined.probability_spread,
            members_answered=len(answered),
            members_failed=len(members) - len(answered),
        )
    )
    return response


def _combine(
    plan: common_pb2.Plan,
    aggregation: int,
    reports: list[common_pb2.EscalationStep],
    probabilities: list[np.ndarray | None],
    weights: list[float],
) -> Combined:
    """Combines the answering members' answers by ``aggregation``."""
    if aggregation == common_pb2.AGGREGATION_MEAN_PROBABILITY:
        if any(p is None for p in probabilities):
            raise InvalidArgument(
                "aggregation AGGREGATION_MEAN_PROBABILITY needs members that answer class probabilities; "
                "grid answers combine by AGGREGATION_BEST_SCORE, AGGREGATION_PLURALITY or AGGREGATION_WEIGHTED_VOTE"
            )
        return mean_probability([p for p in probabilities if p is not None], weights)
    labels = [reported.answer.label for reported in reports]
    if aggregation == common_pb2.AGGREGATION_WEIGHTED_VOTE:
        return weighted_vote(labels, [reported.answer.confidence for reported in reports], weights)
    if aggregation == common_pb2.AGGREGATION_BEST_SCORE:
        return best_score(offered(plan, reports))
    return plurality(labels)
