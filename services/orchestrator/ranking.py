"""Which step offered an answer, and the next best answers a response carries beside its own.

Pure logic, no gRPC: reads the steps a plan reported (the protobuf messages) and ranks every
candidate they offered with ``aggregation.rank_offered``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from inferscale.steps import ANSWERED
from inferscale.v1 import common_pb2
from services.orchestrator.aggregation import Offered, alternatives_to

# How a plan ranks the alternatives of grid answers, as it ranked its answer: by the plan's
# aggregation when it has one (an ensemble, a search over grids), else a search by its
# score-weighted vote and a cascade or one model by best score.
RANKING_OF_STRATEGY = {common_pb2.STRATEGY_SEARCH: "score_vote"}
RANKING_OF_AGGREGATION = {
    common_pb2.AGGREGATION_PLURALITY: "plurality",
    common_pb2.AGGREGATION_WEIGHTED_VOTE: "weighted_vote",
    common_pb2.AGGREGATION_BEST_SCORE: "best_score",
}


def offering(label: str, steps: Sequence[common_pb2.EscalationStep]) -> int:
    """The position among ``steps`` of the one whose outputs carry ``label``: the most confident
    step that answered it, else the first that offered it among its alternatives."""
    own = [i for i, step in enumerate(steps) if step.answer.label == label]
    if own:
        return max(own, key=lambda i: steps[i].answer.confidence)
    return next(i for i, step in enumerate(steps) if any(a.label == label for a in step.alternatives))


def offered(plan: common_pb2.Plan, steps: Iterable[common_pb2.EscalationStep]) -> list[Offered]:
    """Every candidate the steps that answered offered, in the steps' order, weighted by their plan step."""
    found = []
    for member, step in enumerate(s for s in steps if s.decision in ANSWERED):
        weight = (plan.steps[step.index].weight if 0 <= step.index < len(plan.steps) else 0.0) or 1.0
        for rank, answer in enumerate([step.answer, *step.alternatives]):
            found.append(Offered(answer.label, answer.confidence, weight, member, rank))
    return found


def alternatives(
    plan: common_pb2.Plan, answer: str, steps: Iterable[common_pb2.EscalationStep]
) -> list[common_pb2.Answer]:
    """The next best distinct answers after ``answer``, ranked as the plan ranked its answer."""
    rule = RANKING_OF_AGGREGATION.get(plan.aggregation) or RANKING_OF_STRATEGY.get(plan.strategy, "best_score")
    return [
        common_pb2.Answer(label=label, confidence=confidence)
        for label, confidence in alternatives_to(answer, offered(plan, steps), rule)
    ]
