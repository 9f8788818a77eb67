"""Adaptive multi-model search, served: one call at a time, up to plan.max_calls, as the tree search picks.

Which model to call next, and whether it answers anew or refines an answer found so far, is
decided by ``services.orchestrator.search_tree`` (pure, AB-MCTS on treequest); this module runs
each call it picks as a step, tells the tree the answer's score, and combines the answers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from inferscale import telemetry
from inferscale.errors import InvalidArgument, ModelFailed, Unavailable
from inferscale.steps import ANSWERED
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.aggregation import best_score, vote_entropy
from services.orchestrator.ranking import offered, offering
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.search_tree import (
    NEXT_CANDIDATES,
    REFINE,
    SAMPLE,
    Expansion,
    SearchMember,
    TreeSearch,
)
from services.orchestrator.step_runner import Execution, StepRunner, expected_cost, not_run, ran

SEARCH_ACTIONS = {SAMPLE: common_pb2.SEARCH_ACTION_SAMPLE, REFINE: common_pb2.SEARCH_ACTION_REFINE}


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Calls the models the search picks until an answer reaches its step's threshold or the calls run out."""
    request, plan, response = execution.request, execution.plan, execution.response
    runner.record_skipped(execution, models)
    members = [(index, model) for index, model in enumerate(models) if model is not None]
    # Seeded by the request id: the same request, meeting the same answers, searches the same
    # way, and the samples of a model with a sampling input can be reproduced.
    rng = np.random.default_rng(
        int.from_bytes(hashlib.sha256(request.request_id.encode()).digest()[:8], "big")
    )
    search = TreeSearch(
        [SearchMember.of(model, expected_cost(execution, model)) for _, model in members], rng
    )
    # Each answer's outputs, and its position among the response's steps (a text answer's
    # tokens are that step's), by the call that made it.
    outputs: dict[int, tuple[list[common_pb2.InferTensor], common_pb2.InferTensor]] = {}
    positions: dict[int, int] = {}
    last_error: Exception | None = None
    for _ in range(plan.max_calls):
        expansion = search.propose(
            plan.cost_ceiling - response.total_cost if plan.cost_ceiling else None
        )
        if expansion is None:
            break
        index, model = members[expansion.member]
        step = plan.steps[index]
        action = SEARCH_ACTIONS[expansion.action]
        if search.answers:
            why = runner.stop_reason(execution, model)
            if why:
                stopped = not_run(
                    index,
                    step,
                    common_pb2.DECISION_STOPPED,
                    f"{why}; the search's answer so far is returned",
                )
                stopped.search_action = action
                runner.record(execution, stopped)
                break
        refined = expansion.refined
        with runner.step(execution, index, step, model, action) as span:
            span.set_attribute(telemetry.ATTR_SEARCH_ACTION, common_pb2.SearchAction.Name(action))
            try:
                call = await runner.call(
                    execution,
                    model,
                    runner.timeout(execution),
                    outputs[refined.call][1] if refined else None,
                    # A text model's samples are seeded by the execution's own random bytes (the
                    # step runner draws them), never by the caller's request id.
                    None if model.generates_text else expansion.seed,
                )
            except (ModelFailed, Unavailable) as error:
                last_error = error
                search.fail(expansion)
                failed = not_run(
                    index, step, common_pb2.DECISION_FAILED, f"model {model.name} failed: {error}"
                )
                failed.search_action = action
                runner.record(execution, failed, span)
                continue
            answer = call.answer
            found = search.observe(
                expansion, answer.label, answer.confidence, 1 + len(answer.alternatives)
            )
            outputs[found.call] = (list(call.result.outputs), call.output)
            positions[found.call] = len(response.steps)
            done = answer.confidence >= step.accept_threshold
            reason = (
                f"answer {found.call} ({describe(search, expansion, members)}): score {answer.confidence:.3f} "
                + (
                    f">= threshold {step.accept_threshold:.3f}, the search ends"
                    if done
                    else f"< threshold {step.accept_threshold:.3f}, the search goes on"
                )
            )
            reported = ran(
                index,
                step,
                call,
                common_pb2.DECISION_ACCEPT if done else common_pb2.DECISION_ESCALATE,
                reason,
            )
            reported.search_action = action
            runner.record(execution, reported, span)
        if done:
            break
    if not search.answers:
        if last_error is not None:
            raise last_error
        # No call was made: before the first one only the cost ceiling rules a member out.
        raise InvalidArgument(
            f"plan.cost_ceiling {plan.cost_ceiling:g} is below the cost of every model of the search"
        )
    chosen, confidence = search.answer()
    if plan.aggregation == common_pb2.AGGREGATION_BEST_SCORE:
        calls = [s for s in response.steps if s.decision in ANSWERED]
        combined = best_score(offered(plan, calls))
        chosen, confidence = search.answers[offering(combined.label, calls)], combined.confidence
        response.answer.CopyFrom(common_pb2.Answer(label=combined.label, confidence=confidence))
    else:
        response.answer.CopyFrom(common_pb2.Answer(label=chosen.label, confidence=confidence))
    labels, scores = search.label_weights()
    response.outputs.extend(outputs[chosen.call][0])
    execution.answer_position = positions[chosen.call]
    response.uncertainty.CopyFrom(
        common_pb2.Uncertainty(
            vote_entropy=vote_entropy(labels, scores),
            members_answered=len(search.answers),
            members_failed=sum(
                1 for s in response.steps if s.decision == common_pb2.DECISION_FAILED
            ),
        )
    )
    return response


def describe(
    search: TreeSearch, expansion: Expansion, members: list[tuple[int, RegisteredModel]]
) -> str:
    """What a call asked, for its step's reason."""
    name = members[expansion.member][1].name
    refined = expansion.refined
    if refined is not None:
        return f"{name} refines answer {refined.call}, {members[refined.member][1].name}'s"
    if expansion.order and search.members[expansion.member].renewal == NEXT_CANDIDATES:
        return f"{name}'s candidates from rank {expansion.order + 1}"
    return f"sample {expansion.order} of {name}"
