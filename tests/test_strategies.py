"""Strategies on the real suite: ensemble aggregation and uncertainty, cost ceilings, deadlines, failing members.

A private repository adds two models made for these tests: one that fails every request and one
that takes 3 s, so that failure and deadline behaviour is exercised on a real Triton. The
deadlines leave the other models several times their usual latency, so that a loaded 2-core
machine does not turn a fast model into a slow one.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from inferscale.models.digits import load_model, load_split
from inferscale.suite import Suite
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc
from tests.conftest import MODEL_REPOSITORY, private_repository, private_suite

pytestmark = pytest.mark.integration
IMAGES = load_split().x_holdout.astype(np.float32)

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IMAGE" data_type: TYPE_FP32 dims: [ -1, 64 ] }} ]
output [ {{ name: "PROBS" data_type: TYPE_FP32 dims: [ -1, 10 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters: {{ key: "inferscale.task" value: {{ string_value: "digits" }} }}
parameters: {{ key: "inferscale.tier" value: {{ string_value: "{tier}" }} }}
parameters: {{ key: "inferscale.cost" value: {{ string_value: "1" }} }}
parameters: {{ key: "inferscale.answer_kind" value: {{ string_value: "class_probabilities" }} }}
parameters: {{ key: "inferscale.confidence" value: {{ string_value: "max_probability" }} }}
parameters: {{ key: "inferscale.output" value: {{ string_value: "PROBS" }} }}
"""
FAULTY = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("out of order", pb_utils.TritonError.INTERNAL))
                for _ in requests]
"""
SLOW = """import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(3.0)
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().shape[0]
            probs = np.full((rows, 10), 0.5 / 9, np.float32)
            probs[:, 0] = 0.5
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBS", probs)]))
        return responses
"""


def add_model(repository: pathlib.Path, name: str, tier: int, source: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(CONFIG.format(name=name, tier=tier))
    (repository / name / "1" / "model.py").write_text(source)


@pytest.fixture(scope="module")
def troubled_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    """The sample models plus digits_faulty (tier 2) and digits_slow (tier 4) on their own Triton."""
    repository = private_repository(tmp_path_factory, "troubled")
    add_model(repository, "digits_faulty", 2, FAULTY)
    add_model(repository, "digits_slow", 4, SLOW)
    with private_suite(tmp_path_factory, "troubled", repository, {"INFERSCALE_SHUTDOWN_GRACE_SECONDS": "1"}) as suite:
        yield suite


@pytest.fixture(scope="module")
def troubled(troubled_suite: Suite) -> Iterator[router_service_pb2_grpc.RouterServiceStub]:
    """A router over the troubled suite."""
    with troubled_suite.channel("router") as channel:
        yield router_service_pb2_grpc.RouterServiceStub(channel)


def infer(router, index: int, timeout: float = 30, **fields: object) -> router_service_pb2.InferResponse:
    request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", IMAGES[index][None, :])], **fields)
    return router.Infer(request, timeout=timeout)


def decisions(response: router_service_pb2.InferResponse) -> list[tuple[str, int]]:
    return [(s.model.name, s.decision) for s in response.steps]


def test_an_ensemble_averages_its_members_and_reports_their_disagreement(router) -> None:
    names = ["digits_linear", "digits_mlp", "digits_ensemble"]
    local = {n: load_model(n, MODEL_REPOSITORY / n / "1").predict_proba(IMAGES) for n in names}
    disagreeing = next(i for i in range(len(IMAGES)) if len({int(local[n][i].argmax()) for n in names}) > 1)
    response = infer(router, disagreeing, strategy=common_pb2.STRATEGY_ENSEMBLE, skip_cache=True)
    assert response.plan.aggregation == common_pb2.AGGREGATION_MEAN_PROBABILITY
    assert sorted(decisions(response)) == sorted((n, common_pb2.DECISION_CONTRIBUTED) for n in names)
    mean = np.mean([local[n][disagreeing] for n in names], axis=0)
    assert response.answer.label == str(int(mean.argmax()))
    assert response.answer.confidence == pytest.approx(float(mean.max()), abs=1e-5)
    np.testing.assert_allclose(np.frombuffer(response.outputs[0].raw_contents, np.float32), mean, atol=1e-6)
    assert response.uncertainty.vote_entropy > 0
    assert (response.uncertainty.members_answered, response.uncertainty.members_failed) == (3, 0)
    assert response.total_cost == pytest.approx(sum(s.cost for s in response.plan.steps))


def test_an_ensemble_by_plurality_and_by_weighted_vote(router) -> None:
    for aggregation in (common_pb2.AGGREGATION_PLURALITY, common_pb2.AGGREGATION_WEIGHTED_VOTE):
        response = infer(router, 0, strategy=common_pb2.STRATEGY_ENSEMBLE, aggregation=aggregation, skip_cache=True)
        labels = [s.answer.label for s in response.steps]
        assert response.answer.label == max(set(labels), key=labels.count)
        assert response.answer.confidence == pytest.approx(labels.count(response.answer.label) / 3)


def test_refinement_passes_the_draft_answer_to_the_refining_model(router) -> None:
    from inferscale.models.digits import refine

    linear = load_model("digits_linear", MODEL_REPOSITORY / "digits_linear" / "1").predict_proba(IMAGES)
    mlp = load_model("digits_mlp", MODEL_REPOSITORY / "digits_mlp" / "1").predict_proba(IMAGES)
    index = next(i for i in range(len(IMAGES)) if linear[i].max() < 0.9)
    refined = refine(mlp[index : index + 1], linear[index : index + 1])[0]
    response = infer(router, index, strategy=common_pb2.STRATEGY_REFINEMENT, confidence_threshold=1.0, skip_cache=True)
    assert [s.model.name for s in response.plan.steps] == ["digits_linear", "digits_mlp"]
    draft, second = response.steps
    assert draft.answer.confidence == pytest.approx(float(linear[index].max()), abs=1e-5)
    # The refiner's answer is its own probabilities combined with the draft, not its own alone.
    assert second.answer.confidence == pytest.approx(float(refined.max()), abs=1e-5)
    assert second.answer.confidence != pytest.approx(float(mlp[index].max()), abs=1e-5)
    assert response.answer.label == str(int(refined.argmax()))
    np.testing.assert_allclose(np.frombuffer(response.outputs[0].raw_contents, np.float32), refined, atol=1e-6)


def test_tier_thresholds_hold_the_cheap_tier_to_a_higher_bar(router) -> None:
    local = load_model("digits_linear", MODEL_REPOSITORY / "digits_linear" / "1").predict_proba(IMAGES)
    index = next(i for i in range(len(IMAGES)) if 0.91 <= local[i].max() < 0.95)
    by_default = infer(router, index, skip_cache=True)
    assert decisions(by_default)[0] == ("digits_linear", common_pb2.DECISION_ACCEPT)
    strict = infer(router, index, skip_cache=True, tier_thresholds=[common_pb2.TierThresholds(tier=1, accept_threshold=0.95)])
    assert decisions(strict)[0] == ("digits_linear", common_pb2.DECISION_ESCALATE)
    assert strict.steps[0].threshold == 0.95 and strict.plan.steps[1].accept_threshold == 0.9


def test_a_cost_ceiling_stops_the_cascade_and_returns_the_best_answer_so_far(router) -> None:
    response = infer(router, 1, confidence_threshold=1.0, cost_ceiling=3.0, skip_cache=True)
    names = [s.model.name for s in response.steps]
    assert names == ["digits_linear", "digits_mlp", "digits_ensemble"]
    stopped = response.steps[-1]
    assert stopped.decision == common_pb2.DECISION_STOPPED
    assert stopped.reason.startswith("cost 2.10 + 22.00 would exceed the ceiling 3.00")
    assert response.total_cost == pytest.approx(2.1)
    best = max(response.steps[:2], key=lambda s: s.answer.confidence)
    assert response.answer == best.answer
    assert best.decision == common_pb2.DECISION_ACCEPT and "best answer so far" in best.reason


def test_an_ensemble_under_a_cost_ceiling_keeps_the_cheapest_members_that_fit(router) -> None:
    response = infer(router, 1, strategy=common_pb2.STRATEGY_ENSEMBLE, cost_ceiling=3.0, skip_cache=True)
    assert [s.model.name for s in response.plan.steps] == ["digits_linear", "digits_mlp"]
    assert response.total_cost <= 3.0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cost_ceiling": 0.5}, "cost_ceiling 0.5 is below the cost 1.0"),
        ({"aggregation": common_pb2.AGGREGATION_PLURALITY}, "aggregation may be set only with strategy STRATEGY_ENSEMBLE"),
        ({"confidence_threshold": 0.8, "escalate_threshold": 0.9}, "escalate_threshold 0.9 exceeds confidence_threshold 0.8"),
        ({"cost_ceiling": float("inf")}, "cost_ceiling inf must be a finite number"),
        ({"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": 65}, "max_calls 65 is outside [0, 64]"),
        ({"max_calls": 4}, "max_calls may be set only with strategy STRATEGY_SEARCH"),
        ({"strategy": common_pb2.STRATEGY_ENSEMBLE, "analyze_complexity": True}, "analyze_complexity may be set only"),
    ],
)
def test_bad_strategy_settings_are_refused_naming_the_field(router, fields: dict, named: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        infer(router, 0, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in raised.value.details()


SEARCH_ACTIONS = {common_pb2.SEARCH_ACTION_SAMPLE, common_pb2.SEARCH_ACTION_REFINE}


def hard_image() -> int:
    """An image no sample model is sure of, so that no call's score reaches a threshold of 1.0."""
    names = ["digits_linear", "digits_mlp", "digits_ensemble"]
    local = {n: load_model(n, MODEL_REPOSITORY / n / "1").predict_proba(IMAGES) for n in names}
    return next(i for i in range(len(IMAGES)) if all(local[n][i].max() < 0.99 for n in names))


def search(router, index: int, request_id: str, **fields: object) -> router_service_pb2.InferResponse:
    return infer(router, index, request_id=request_id, strategy=common_pb2.STRATEGY_SEARCH, skip_cache=True, **fields)


def test_an_adaptive_search_makes_its_calls_and_answers_their_score_weighted_vote(router) -> None:
    index = hard_image()
    response = search(router, index, "search-vote", max_calls=6, confidence_threshold=1.0)
    assert response.plan.max_calls == 6 and len(response.steps) == 6
    assert {s.search_action for s in response.steps} <= SEARCH_ACTIONS
    assert all(s.decision == common_pb2.DECISION_ESCALATE for s in response.steps)
    # A deterministic model answers once; only the model with a refinement input refines.
    assert sum(1 for s in response.steps if s.model.name == "digits_ensemble") <= 1
    assert {s.model.name for s in response.steps if s.search_action == common_pb2.SEARCH_ACTION_REFINE} <= {"digits_mlp"}
    totals: dict[str, float] = {}
    for step in response.steps:
        totals[step.answer.label] = totals.get(step.answer.label, 0.0) + step.answer.confidence
    assert response.answer.label == max(totals, key=totals.__getitem__)
    assert response.answer.confidence == pytest.approx(totals[response.answer.label] / 6, abs=1e-5)
    assert response.uncertainty.members_answered == 6
    assert response.total_cost == pytest.approx(sum(s.cost for s in response.steps))
    # Seeded by the request id: the same request searches the same way.
    again = search(router, index, "search-vote", max_calls=6, confidence_threshold=1.0)
    assert [(s.model.name, s.search_action, s.answer.confidence) for s in again.steps] == [
        (s.model.name, s.search_action, s.answer.confidence) for s in response.steps
    ]


def test_a_sampling_model_gives_a_fresh_answer_on_each_later_sample(router) -> None:
    index = hard_image()
    for attempt in range(10):
        response = search(router, index, f"search-samples-{attempt}", max_calls=8, confidence_threshold=1.0, cost_ceiling=8)
        samples = [
            s.answer.confidence for s in response.steps
            if s.model.name == "digits_linear" and s.search_action == common_pb2.SEARCH_ACTION_SAMPLE
        ]
        if len(samples) >= 2:
            break
    else:
        pytest.fail("no search of ten asked digits_linear for two samples")
    plain = load_model("digits_linear", MODEL_REPOSITORY / "digits_linear" / "1").predict_proba(IMAGES[index : index + 1])
    # The first sample is the model's plain answer; later ones answer noisy views, each its own.
    assert samples[0] == pytest.approx(float(plain.max()), abs=1e-5)
    assert len(set(samples)) == len(samples)


def test_a_search_ends_at_a_confident_answer_and_keeps_within_its_cost_ceiling(router) -> None:
    confident = search(router, 0, "search-early", max_calls=8, confidence_threshold=0.5)
    assert len(confident.steps) == 1 and confident.steps[0].decision == common_pb2.DECISION_ACCEPT
    assert "the search ends" in confident.steps[0].reason
    ceiling = search(router, hard_image(), "search-ceiling", max_calls=8, confidence_threshold=1.0, cost_ceiling=3.0)
    assert ceiling.total_cost <= 3.0 and ceiling.steps
    assert "digits_ensemble" not in {s.model.name for s in ceiling.steps}  # costs 22, never fits


def test_a_search_call_that_fails_is_reported_and_the_search_goes_on(troubled) -> None:
    for attempt in range(10):
        response = search(troubled, 4, f"search-faulty-{attempt}", max_calls=10, confidence_threshold=1.0, cost_ceiling=8)
        failed = [s for s in response.steps if s.model.name == "digits_faulty"]
        if failed:
            break
    else:
        pytest.fail("no search of ten called digits_faulty")
    assert len(failed) == 1  # a deterministic model that failed is not asked again
    assert failed[0].decision == common_pb2.DECISION_FAILED and "out of order" in failed[0].reason
    assert response.answer.label and response.uncertainty.members_failed == 1
    assert response.uncertainty.members_answered == len(response.steps) - 1


def complexity_scores() -> np.ndarray:
    from inferscale.models.complexity import ComplexityModel

    return ComplexityModel.from_npz(MODEL_REPOSITORY / "digits_complexity" / "1" / "weights.npz").predict(IMAGES)[:, 0]


def test_complexity_analysis_scores_the_request_first_and_a_complex_one_skips_the_cheapest_tier(router) -> None:
    scores = complexity_scores()
    easy, hard = int(np.argmin(scores)), int(np.argmax(scores))
    assert scores[hard] >= 0.25  # the router's default INFERSCALE_SKIP_COMPLEXITY
    calm = infer(router, easy, analyze_complexity=True, skip_cache=True)
    analysis = calm.steps[0]
    assert (analysis.index, analysis.model.name, analysis.decision) == (-1, "digits_complexity", common_pb2.DECISION_ANALYZED)
    assert analysis.answer.confidence == pytest.approx(float(scores[easy]), abs=1e-5) and analysis.cost > 0
    assert calm.plan.complexity_model == "digits_complexity"
    assert calm.steps[1].model.name == "digits_linear" and calm.steps[1].decision != common_pb2.DECISION_SKIPPED
    assert calm.total_cost == pytest.approx(sum(s.cost for s in calm.steps))
    stormy = infer(router, hard, analyze_complexity=True, skip_cache=True)
    skipped = stormy.steps[1]
    assert (skipped.model.name, skipped.decision) == ("digits_linear", common_pb2.DECISION_SKIPPED)
    assert "the cheapest tier is skipped" in skipped.reason
    assert stormy.steps[2].model.name == "digits_mlp" and stormy.steps[2].cost > 0


def test_experts_route_an_easy_image_to_the_cheap_model_and_a_hard_one_to_the_strong_one(router) -> None:
    scores = complexity_scores()
    chosen = {}
    for index in (int(np.argmin(scores)), int(np.argmax(scores))):
        response = infer(router, index, strategy=common_pb2.STRATEGY_EXPERT, skip_cache=True)
        answered = [s for s in response.steps if s.decision == common_pb2.DECISION_ACCEPT]
        assert len(answered) == 1 and response.steps[0].decision == common_pb2.DECISION_ANALYZED
        assert response.answer.label == answered[0].answer.label
        assert response.total_cost == pytest.approx(response.steps[0].cost + answered[0].cost)
        chosen[index] = answered[0].model.name
    assert list(chosen.values()) == ["digits_linear", "digits_ensemble"]
    # Under a cost ceiling the hard image goes to the most capable expert that fits.
    capped = infer(router, int(np.argmax(scores)), strategy=common_pb2.STRATEGY_EXPERT, cost_ceiling=3.0, skip_cache=True)
    answered = [s for s in capped.steps if s.decision == common_pb2.DECISION_ACCEPT]
    assert [s.model.name for s in answered] == ["digits_mlp"] and "over the cost ceiling" in answered[0].reason
    assert capped.total_cost <= 3.0


def test_complexity_analysis_needs_a_task_that_declares_a_complexity_model(router) -> None:
    request = router_service_pb2.InferRequest(
        task="intents", inputs=[bytes_tensor("TEXT", ["turn on the lights"])], analyze_complexity=True
    )
    with pytest.raises(grpc.RpcError) as raised:
        router.Infer(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "inferscale.complexity_model" in raised.value.details()


def test_a_failing_tier_is_reported_and_the_cascade_goes_on(troubled) -> None:
    response = infer(troubled, 2, confidence_threshold=1.0, skip_cache=True)
    assert [s.model.name for s in response.steps] == [
        "digits_linear", "digits_faulty", "digits_mlp", "digits_ensemble", "digits_slow",
    ]
    failed = response.steps[1]
    assert failed.decision == common_pb2.DECISION_FAILED and "out of order" in failed.reason
    assert response.steps[-1].decision == common_pb2.DECISION_ACCEPT


def test_an_ensemble_member_that_fails_leaves_a_partial_but_correct_result(troubled) -> None:
    response = infer(troubled, 3, strategy=common_pb2.STRATEGY_ENSEMBLE)
    by_name = {s.model.name: s for s in response.steps}
    assert by_name["digits_faulty"].decision == common_pb2.DECISION_FAILED
    assert (response.uncertainty.members_answered, response.uncertainty.members_failed) == (4, 1)
    answered = [s for s in response.steps if s.decision == common_pb2.DECISION_CONTRIBUTED]
    assert len(answered) == 4
    assert response.total_cost == pytest.approx(sum(s.cost for s in answered))
    # A partial result is not cached: the same request runs again.
    assert infer(troubled, 3, strategy=common_pb2.STRATEGY_ENSEMBLE).cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED


def test_a_step_slower_than_the_deadline_left_is_not_started_and_the_best_answer_returns(troubled) -> None:
    # digits_slow's recent p95 (3 s) is learned from calls that had time.
    for index in range(3):
        infer(troubled, index, strategy=common_pb2.STRATEGY_SINGLE, model_name="digits_slow", skip_cache=True)
    response = infer(troubled, 4, timeout=1.8, confidence_threshold=1.0)
    last = response.steps[-1]
    assert (last.model.name, last.decision) == ("digits_slow", common_pb2.DECISION_STOPPED)
    assert "recent p95 latency" in last.reason and "left of the deadline" in last.reason
    ran = [s for s in response.steps if s.decision in (common_pb2.DECISION_ACCEPT, common_pb2.DECISION_ESCALATE)]
    assert response.answer == max(ran, key=lambda s: s.answer.confidence).answer
    # With room to run, the same request is answered by the whole cascade: the cut answer was not cached.
    full = infer(troubled, 4, confidence_threshold=1.0)
    assert full.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert full.steps[-1].model.name == "digits_slow" and full.steps[-1].decision == common_pb2.DECISION_ACCEPT


def test_an_ensemble_member_past_the_deadline_fails_alone_and_keeps_its_replica_in_rotation(troubled, troubled_suite) -> None:
    response = infer(troubled, 5, timeout=2.1, strategy=common_pb2.STRATEGY_ENSEMBLE, skip_cache=True)
    by_name = {s.model.name: s for s in response.steps}
    slow = by_name["digits_slow"]
    assert slow.decision == common_pb2.DECISION_FAILED
    assert "did not answer within the deadline" in slow.reason
    assert response.uncertainty.members_failed == 2  # digits_slow and digits_faulty
    # A caller's deadline is no fault of the replica: it is not taken out of the rotation.
    # Nothing in this suite is a replica's fault (a model's error or a caller's deadline), so no
    # call may have been failed over.
    log = (troubled_suite.log_dir / "orchestrator.log").read_text()
    assert "trying another endpoint" not in log
