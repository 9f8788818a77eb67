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


def test_a_solver_answers_the_grid_with_its_score_on_the_training_pairs(router) -> None:
    response = ask(router, strategy=common_pb2.STRATEGY_SINGLE, model_name="arc_geometry", skip_cache=True)
    assert (response.answer.label, response.answer.confidence) == (ANSWER, 1.0)
    assert {t.name for t in response.outputs} == {"ANSWER", "SCORE"}


def test_grids_combine_by_vote_in_an_ensemble_and_by_score_in_a_search(router) -> None:
    ensemble = ask(router, strategy=common_pb2.STRATEGY_ENSEMBLE, skip_cache=True)
    assert ensemble.plan.aggregation == common_pb2.AGGREGATION_PLURALITY  # grids are voted on, not averaged
    assert ensemble.answer.label == ANSWER and any(t.name == "ANSWER" for t in ensemble.outputs)
    search = ask(router, strategy=common_pb2.STRATEGY_SEARCH, max_calls=3, confidence_threshold=1.0, skip_cache=True)
    assert search.answer.label == ANSWER and search.steps[0].search_action == common_pb2.SEARCH_ACTION_SAMPLE


@pytest.mark.parametrize(
    ("fields", "task", "code", "named"),
    [
        ({"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "arc_geometry"}, {"train": []}, "INVALID_ARGUMENT", "'train' and 'test'"),
        ({"strategy": common_pb2.STRATEGY_SINGLE, "model_name": "arc_geometry"}, {**TASK, "test": TASK["test"] * 2}, "INVALID_ARGUMENT", "the one input"),
        (
            {"strategy": common_pb2.STRATEGY_ENSEMBLE, "aggregation": common_pb2.AGGREGATION_MEAN_PROBABILITY},
            TASK,
            "INVALID_ARGUMENT",
            "grid answers combine by AGGREGATION_PLURALITY",
        ),
    ],
)
def test_bad_tasks_and_averaged_grids_are_refused_naming_the_fault(router, fields: dict, task: object, code: str, named: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        ask(router, task, skip_cache=True, **fields)
    assert raised.value.code() == getattr(grpc.StatusCode, code)
    assert named in raised.value.details()
