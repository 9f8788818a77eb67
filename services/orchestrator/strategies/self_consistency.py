"""Self-consistency: one model samples the prompt again and again, and the answer most samples reach wins.

A sample whose text fails its model's answer check (an arithmetic slip) votes for nothing while
another sample's text holds (services/orchestrator/text/confidence.py). Sampling is adaptive: it
stops as soon as the vote is settled (no other answer can still overtake
the leader with the samples left, or the leader's share of at least three samples reaches the
step's threshold), so an easy prompt costs two or three samples and a hard one up to
``plan.max_calls``. Each sample is a step (DECISION_CONTRIBUTED) with a fresh seed, and no sample
is ever served from a cache.
"""

from __future__ import annotations

from inferscale.errors import ModelFailed
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.aggregation import vote_entropy
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import Execution, StepRunner, ran, text_output
from services.orchestrator.text.confidence import Vote


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Samples the plan's first runnable model until the vote settles or the calls run out."""
    plan, response = execution.plan, execution.response
    runner.record_skipped(execution, models)
    index, model = next((i, m) for i, m in enumerate(models) if m is not None)
    step = plan.steps[index]
    vote = Vote()
    # The position of each answer's first sample (whose text held its check, or else any): its
    # text and tokens stand for the answer.
    first_position: dict[str, int] = {}
    first_failed_position: dict[str, int] = {}
    for sample in range(plan.max_calls):
        if vote.samples and runner.stopped(execution, index, step, model, "the vote so far stands"):
            break
        position = len(response.steps)
        with runner.step(execution, index, step, model) as span:
            call = await runner.call_or_record_failure(execution, index, step, model, span)
            if call is None:
                continue
            label = call.answer.label
            vote.add(label, holds=not call.slipped)
            (first_failed_position if call.slipped else first_position).setdefault(label, position)
            settled = vote.settled(plan.max_calls, step.accept_threshold)
            leader, votes = vote.leader()
            reason = f"sample {sample + 1}: {label!r}; leader {leader!r} with {votes} of {vote.samples}" + (
                f"; settled: {settled}" if settled else ""
            )
            runner.record(execution, ran(index, step, call, common_pb2.DECISION_CONTRIBUTED, reason), span)
        if settled:
            break
    if not vote.samples:
        raise execution.last_error or ModelFailed("no sample was drawn")
    leader, votes = vote.leader()
    execution.answer_position = (first_failed_position | first_position).get(leader, 0)
    chosen = response.steps[execution.answer_position]
    response.answer.CopyFrom(common_pb2.Answer(label=leader, confidence=vote.share(), text=chosen.answer.text))
    response.outputs.extend(text_output(execution))
    labels = list((vote.counts or vote.failed).elements())
    response.uncertainty.CopyFrom(
        common_pb2.Uncertainty(
            vote_entropy=vote_entropy(labels, [1.0] * len(labels)) if labels else 0.0,
            members_answered=vote.samples,
            members_failed=sum(1 for s in response.steps if s.decision == common_pb2.DECISION_FAILED),
        )
    )
    return response

