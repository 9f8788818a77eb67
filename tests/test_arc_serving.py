"""ARC tasks through InferScale on the real Triton: grid answers from the arc_geometry solver."""

from __future__ import annotations

import json

import grpc
import pytest

from inferscale.tensors import bytes_tensor
from inferscale.v1 import common_pb2, router_service_pb2

pytestmark = pytest.mark.integration

# Rotate by 180 degrees, then 1 -> 5; the answer to the test input follows the same rule.
TASK = {
    "train": [
        {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 5]]},
        {"input": [[1, 0, 0], [0, 0, 2]], "output": [[2, 0, 0], [0, 0, 5]]},
    ],
    "test": [{"input": [[1, 1], [0, 3]]}],
}
ANSWER = "[[3,0],[5,5]]"


def ask(router, task: object = TASK, **fields: object) -> router_service_pb2.InferResponse:  # type: ignore[no-untyped-def]
    request = router_service_pb2.InferRequest(task="arc", inputs=[bytes_tensor("TASK", [json.dumps(task)])], **fields)
    return router.Infer(request, timeout=30)


def solved_alone(router, model_name: str, pairs, test):  # type: ignore[no-untyped-def]
    """The grid and confidence ``model_name`` alone answers, through the router, for the task of
    ``pairs`` (training input and output grids) and ``test`` (a test input)."""
    task = {"train": [{"input": i, "output": o} for i, o in pairs], "test": [{"input": test}]}
    response = ask(router, task, strategy=common_pb2.STRATEGY_SINGLE, model_name=model_name, skip_cache=True)
    return json.loads(response.answer.label), response.answer.confidence


def test_a_solver_answers_the_grid_with_its_score_on_the_training_pairs_and_its_next_candidates(router) -> None:
    response = ask(router, strategy=common_pb2.STRATEGY_SINGLE, model_name="arc_geometry", skip_cache=True)
    assert (response.answer.label, response.answer.confidence) == (ANSWER, 1.0)
    assert {t.name for t in response.outputs} == {"ANSWER", "SCORE"}
    # A second attempt: the solver's next best distinct grids, on the step and on the response.
    step_alternatives = [(a.label, a.confidence) for a in response.steps[0].alternatives]
    assert len(step_alternatives) == 2 and ANSWER not in {label for label, _ in step_alternatives}
    assert all(confidence < 1.0 for _, confidence in step_alternatives)
    assert [(a.label, a.confidence) for a in response.alternatives] == step_alternatives


def test_an_ensemble_of_grids_takes_the_best_score_and_ranks_every_candidate_after_it(router) -> None:
    ensemble = ask(router, strategy=common_pb2.STRATEGY_ENSEMBLE, skip_cache=True)
    assert ensemble.plan.aggregation == common_pb2.AGGREGATION_BEST_SCORE  # grids are not averaged
    assert ensemble.answer.label == ANSWER and any(t.name == "ANSWER" for t in ensemble.outputs)
    offered = {}
    for step in ensemble.steps:
        for answer in [step.answer, *step.alternatives]:
            offered[answer.label] = max(offered.get(answer.label, 0.0), answer.confidence)
    alternatives = [(a.label, a.confidence) for a in ensemble.alternatives]
    assert alternatives and ANSWER not in dict(alternatives)
    assert all(offered[label] == pytest.approx(confidence) for label, confidence in alternatives)
    assert [c for _, c in alternatives] == sorted((c for _, c in alternatives), reverse=True)
    # The best of what was offered and not chosen leads the alternatives.
    assert alternatives[0][1] == pytest.approx(max(c for label, c in offered.items() if label != ANSWER))


def test_a_cascade_of_solvers_stops_at_the_first_that_reproduces_every_training_pair(router) -> None:
    response = ask(router, strategy=common_pb2.STRATEGY_CASCADE, confidence_threshold=1.0, skip_cache=True)
    assert response.answer.label == ANSWER
    ran = [s for s in response.steps if s.decision in (common_pb2.DECISION_ACCEPT, common_pb2.DECISION_ESCALATE)]
    assert [s.model.name for s in ran] == ["arc_geometry"] and ran[0].decision == common_pb2.DECISION_ACCEPT
    assert len(response.alternatives) == 2


def test_a_search_over_grids_answers_the_best_score_of_every_call(router) -> None:
    # The search is reproducible by request id: pinned, it makes the same calls every run. Its
    # first round asks every solver once, cheapest first; twelve calls reach past that round.
    search = ask(router, strategy=common_pb2.STRATEGY_SEARCH, max_calls=12, skip_cache=True, request_id="search-best-score")
    assert search.plan.aggregation == common_pb2.AGGREGATION_BEST_SCORE
    assert search.answer.label == ANSWER and search.steps[0].search_action == common_pb2.SEARCH_ACTION_SAMPLE
    calls = [s for s in search.steps if s.decision in (common_pb2.DECISION_ACCEPT, common_pb2.DECISION_ESCALATE)]
    best = max(a.confidence for s in calls for a in [s.answer, *s.alternatives])
    assert search.answer.confidence == pytest.approx(best) == 1.0
    assert search.alternatives and ANSWER not in {a.label for a in search.alternatives}


@pytest.mark.parametrize(
    ("fields", "task", "code", "named"),
    [
        ({"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "arc_geometry"}, {"train": []}, "INVALID_ARGUMENT", "'train' and 'test'"),
        ({"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "arc_geometry"}, {**TASK, "test": TASK["test"] * 2}, "INVALID_ARGUMENT", "the one input"),
        ({"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "arc_programs_3"}, {**TASK, "train": TASK["train"] * 9}, "INVALID_ARGUMENT", "at most 16 training pairs, not 18"),
        (
            {"strategy": common_pb2.STRATEGY_ENSEMBLE, "aggregation": common_pb2.AGGREGATION_MEAN_PROBABILITY},
            TASK,
            "INVALID_ARGUMENT",
            "grid answers combine by AGGREGATION_BEST_SCORE",
        ),
    ],
)
def test_bad_tasks_and_averaged_grids_are_refused_naming_the_fault(router, fields: dict, task: object, code: str, named: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        ask(router, task, skip_cache=True, **fields)
    assert raised.value.code() == getattr(grpc.StatusCode, code)
    assert named in raised.value.details()
