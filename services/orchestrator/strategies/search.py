"""Adaptive multi-model search, served: one call at a time, up to plan.max_calls, chosen by the bandit.

Which model to call next and whether it samples anew or refines an earlier answer is decided by
``services.orchestrator.adaptive_search`` (pure); this module runs each call it picks as a step.
"""

from __future__ import annotations

import hashlib

import numpy as np

from inferscale import telemetry
from inferscale.errors import InvalidArgument, ModelFailed, Unavailable
from inferscale.steps import ANSWERED
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.adaptive_search import REFINE, SAMPLE, AdaptiveSearch, SearchMember
from services.orchestrator.aggregation import best_score, vote_entropy
from services.orchestrator.ranking import offered, offering
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import Execution, StepRunner, not_run, ran


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Calls the models the search picks until an answer reaches its step's threshold or the calls run out."""
    request, plan, response = execution.request, execution.plan, execution.response
    runner.record_skipped(execution, models)
    members = [(index, model) for index, model in enumerate(models) if model is not None]
    # Seeded by the request id: the same request searches the same way, and its samples can
    # be reproduced.
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(request.request_id.encode()).digest()[:8], "big"))
    search = AdaptiveSearch(
        [SearchMember(m.samples, m.refines, m.cost) for _, m in members], rng
    )
    outputs: dict[int, tuple[list[common_pb2.InferTensor], common_pb2.InferTensor]] = {}
    # Each answer's position among the response's steps: a text answer's tokens are that step's.
    positions: dict[int, int] = {}
    last_error: Exception | None = None
    for _ in range(plan.max_calls):
        budget_left = plan.cost_ceiling - response.total_cost if plan.cost_ceiling else None
        arm = search.next_arm(budget_left)
        if arm is None:
            break
        index, model = members[arm.member]
        step = plan.steps[index]
        action = common_pb2.SEARCH_ACTION_SAMPLE if arm.action == SAMPLE else common_pb2.SEARCH_ACTION_REFINE
        if search.candidates:
            why = runner.stop_reason(execution, model)
            if why:
                reason = f"{why}; the search's answer so far is returned"
                stopped = not_run(index, step, common_pb2.DECISION_STOPPED, reason)
                stopped.search_action = action
                runner.record(execution, stopped)
                break
        refined = search.to_refine(arm.member) if arm.action == REFINE else None
        # A sampling model's first answer is its plain one; later samples get fresh seeds.
        seed = int(rng.integers(2**32)) if arm.action == SAMPLE and model.samples and arm.calls else None
        with runner.step(execution, index, step, model, action) as span:
            span.set_attribute(telemetry.ATTR_SEARCH_ACTION, common_pb2.SearchAction.Name(action))
            try:
                call = await runner.call(
                    execution, model, runner.timeout(execution), outputs[refined.call][1] if refined else None, seed
                )
            except (ModelFailed, Unavailable) as error:
                last_error = error
                search.fail(arm)
                failed = not_run(index, step, common_pb2.DECISION_FAILED, f"model {model.name} failed: {error}")
                failed.search_action = action
                runner.record(execution, failed, span)
                continue
            answer = call.answer
            candidate = search.observe(arm, answer.label, answer.confidence, refined)
            outputs[candidate.call] = (list(call.result.outputs), call.output)
            positions[candidate.call] = len(response.steps)
            done = answer.confidence >= step.accept_threshold
            what = f"refines answer {refined.call}" if refined else f"sample {arm.calls} of {model.name}"
            reason = (
                f"answer {candidate.call} ({what}): score {answer.confidence:.3f} "
                + (f">= threshold {step.accept_threshold:.3f}, the search ends" if done
                   else f"< threshold {step.accept_threshold:.3f}, the search goes on")
            )
            reported = ran(
                index, step, call, common_pb2.DECISION_ACCEPT if done else common_pb2.DECISION_ESCALATE, reason
            )
            reported.search_action = action
            runner.record(execution, reported, span)
        if done:
            break
    if not search.candidates:
        if last_error is not None:
            raise last_error
        # No call was made: before the first one only the cost ceiling rules a member out.
        raise InvalidArgument(f"plan.cost_ceiling {plan.cost_ceiling:g} is below the cost of every model of the search")
    chosen, confidence = search.answer()
    if plan.aggregation == common_pb2.AGGREGATION_BEST_SCORE:
        calls = [s for s in response.steps if s.decision in ANSWERED]
        combined = best_score(offered(plan, calls))
        chosen, confidence = search.candidates[offering(combined.label, calls)], combined.confidence
        response.answer.CopyFrom(common_pb2.Answer(label=combined.label, confidence=confidence))
    else:
        response.answer.CopyFrom(common_pb2.Answer(label=chosen.label, confidence=confidence))
    labels, scores = search.label_weights()
    response.outputs.extend(outputs[chosen.call][0])
    execution.answer_position = positions[chosen.call]
    response.uncertainty.CopyFrom(
        common_pb2.Uncertainty(
            vote_entropy=vote_entropy(labels, scores),
            members_answered=len(search.candidates),
            members_failed=sum(1 for s in response.steps if s.decision == common_pb2.DECISION_FAILED),
        )
    )
    return response
