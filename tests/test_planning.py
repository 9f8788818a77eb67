"""The router's pure planning: request validation, plan building and the final-result cache key."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.errors import FailedPrecondition, InvalidArgument, NotFound
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, router_service_pb2
from services.router.planning import build_plan, produced_by_current_versions, result_key, validate_request


def model(name: str, tier: int, cost: float, version: int = 1) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name=name, version=version), task="digits", tier=tier, cost=cost, ready=True
    )


MODELS = [model("heavy", 3, 20.0), model("cheap", 1, 1.0), model("mid", 2, 4.0)]
IMAGE = from_numpy("IMAGE", np.zeros((1, 64), np.float32))


def request(**fields: object) -> router_service_pb2.InferRequest:
    return router_service_pb2.InferRequest(task="digits", inputs=[IMAGE], **fields)


def test_cascade_plan_runs_tiers_cheapest_first_with_the_default_threshold() -> None:
    plan = build_plan(request(), MODELS, default_threshold=0.9)
    assert plan.strategy == common_pb2.STRATEGY_CASCADE
    assert [s.model.name for s in plan.steps] == ["cheap", "mid", "heavy"]
    assert [s.accept_threshold for s in plan.steps] == [0.9, 0.9, 0.9]
    assert [s.cost for s in plan.steps] == [1.0, 4.0, 20.0]


def test_a_requested_threshold_overrides_the_default() -> None:
    plan = build_plan(request(confidence_threshold=0.5), MODELS, default_threshold=0.9)
    assert {s.accept_threshold for s in plan.steps} == {0.5}


def test_single_strategy_plans_only_the_named_model() -> None:
    plan = build_plan(request(strategy=common_pb2.STRATEGY_SINGLE, model_name="mid"), MODELS, 0.9)
    assert plan.strategy == common_pb2.STRATEGY_SINGLE
    assert [s.model.name for s in plan.steps] == ["mid"]


def test_single_strategy_with_an_unknown_model_is_not_found() -> None:
    with pytest.raises(NotFound, match="'nope'"):
        build_plan(request(strategy=common_pb2.STRATEGY_SINGLE, model_name="nope"), MODELS, 0.9)


def test_a_task_without_models_is_not_found() -> None:
    with pytest.raises(NotFound, match="task 'digits'"):
        build_plan(request(), [], 0.9)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"task": ""}, "task"),
        ({"request_id": "x" * 129}, "request_id"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_threshold": float("nan")}, "confidence_threshold"),
        ({"model_name": "cheap"}, "model_name"),
        ({"strategy": common_pb2.STRATEGY_SINGLE}, "model_name"),
        ({"strategy": 99}, "strategy"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(fields: dict, named: str) -> None:
    message = router_service_pb2.InferRequest(task="digits", inputs=[IMAGE])
    for key, value in fields.items():
        setattr(message, key, value)
    with pytest.raises(InvalidArgument, match=named):
        validate_request(message)


def test_a_request_without_inputs_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="inputs"):
        validate_request(router_service_pb2.InferRequest(task="digits"))


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_refused_naming_it() -> None:
    bad = common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=b"\0" * 255)
    with pytest.raises(InvalidArgument, match=r"inputs\[0\]\.raw_contents has 255 bytes.*needs 256"):
        validate_request(router_service_pb2.InferRequest(task="digits", inputs=[bad]))


def test_result_key_is_stable_and_changes_with_inputs_threshold_and_model_version() -> None:
    plan = build_plan(request(), MODELS, 0.9)
    key = result_key(plan, [IMAGE])
    assert key == result_key(build_plan(request(), MODELS, 0.9), [IMAGE])
    other_image = from_numpy("IMAGE", np.ones((1, 64), np.float32))
    assert result_key(plan, [other_image]) != key
    assert result_key(build_plan(request(), MODELS, 0.8), [IMAGE]) != key
    newer = [model("heavy", 3, 20.0, version=2), model("cheap", 1, 1.0), model("mid", 2, 4.0)]
    assert result_key(build_plan(request(), newer, 0.9), [IMAGE]) != key


def test_a_cached_value_counts_only_while_its_model_versions_are_current() -> None:
    made_by = [common_pb2.ModelRef(name="cheap", version=1), common_pb2.ModelRef(name="mid", version=1)]
    assert produced_by_current_versions(made_by, MODELS)
    replaced = [model("cheap", 1, 1.0, version=2), model("mid", 2, 4.0)]
    assert not produced_by_current_versions(made_by, replaced)
    removed = [model("cheap", 1, 1.0)]
    assert not produced_by_current_versions(made_by, removed)


def test_tier_thresholds_override_the_request_thresholds_for_their_tier_only() -> None:
    plan = build_plan(
        request(tier_thresholds=[common_pb2.TierThresholds(tier=1, accept_threshold=0.95)]), MODELS, 0.9, 0.7
    )
    assert [(s.tier, s.accept_threshold, s.escalate_threshold) for s in plan.steps] == [
        (1, 0.95, 0.95),
        (2, 0.9, 0.7),
        (3, 0.9, 0.7),
    ]


@pytest.mark.parametrize(
    ("tiers", "named"),
    [
        ([common_pb2.TierThresholds(tier=0, accept_threshold=0.9)], r"tier_thresholds\[0\]\.tier 0"),
        ([common_pb2.TierThresholds(tier=1, accept_threshold=0.9)] * 2, r"tier_thresholds\[1\]\.tier 1 .* once"),
        ([common_pb2.TierThresholds(tier=1, accept_threshold=0)], r"accept_threshold 0\.0 is outside"),
        ([common_pb2.TierThresholds(tier=1, accept_threshold=0.8, escalate_threshold=0.9)], "escalate_threshold 0.9"),
    ],
)
def test_malformed_tier_thresholds_are_refused_naming_the_entry(tiers: list, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_request(request(tier_thresholds=tiers))


def test_a_refinement_plan_drafts_with_the_cheapest_model_then_runs_the_refiners() -> None:
    refiner = model("mid", 2, 4.0)
    refiner.refinement_input = "PRIOR"
    plan = build_plan(request(strategy=common_pb2.STRATEGY_REFINEMENT), [MODELS[0], MODELS[1], refiner], 0.9)
    assert [s.model.name for s in plan.steps] == ["cheap", "mid"]
    with pytest.raises(NotFound, match="inferscale.refinement_input"):
        build_plan(request(strategy=common_pb2.STRATEGY_REFINEMENT), MODELS, 0.9)


def test_non_finite_inputs_are_refused_naming_the_field_unless_the_router_passes_them() -> None:
    image = np.zeros((1, 64), np.float32)
    image[0, 5] = np.nan
    request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", image)])
    with pytest.raises(InvalidArgument, match=r"inputs\[0\] holds 1 NaN or infinite values \(the first at flat index 5\)"):
        validate_request(request)
    validate_request(request, finite_inputs=False)
    integers = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", np.ones((1, 4), np.int32))])
    validate_request(integers)


def test_member_weights_weigh_their_tiers_members_and_the_rest_weigh_one() -> None:
    weighted = request(strategy=common_pb2.STRATEGY_ENSEMBLE, member_weights=[common_pb2.TierWeight(tier=3, weight=2.5)])
    validate_request(weighted)
    plan = build_plan(weighted, MODELS, 0.9, 0.7)
    assert [(s.tier, s.weight) for s in plan.steps] == [(1, 1.0), (2, 1.0), (3, 2.5)]


@pytest.mark.parametrize(
    ("weights", "strategy", "named"),
    [
        ([common_pb2.TierWeight(tier=1, weight=0)], common_pb2.STRATEGY_ENSEMBLE, r"member_weights\[0\]\.weight 0\.0 must be"),
        ([common_pb2.TierWeight(tier=1, weight=float("inf"))], common_pb2.STRATEGY_ENSEMBLE, "weight inf must be"),
        ([common_pb2.TierWeight(tier=1, weight=float("nan"))], common_pb2.STRATEGY_ENSEMBLE, "weight nan must be"),
        ([common_pb2.TierWeight(tier=2, weight=1)] * 2, common_pb2.STRATEGY_ENSEMBLE, r"member_weights\[1\]\.tier 2 .* once"),
        ([common_pb2.TierWeight(tier=0, weight=1)], common_pb2.STRATEGY_ENSEMBLE, r"member_weights\[0\]\.tier 0"),
        ([common_pb2.TierWeight(tier=1, weight=1)], common_pb2.STRATEGY_CASCADE, "only with strategy STRATEGY_ENSEMBLE"),
    ],
)
def test_malformed_member_weights_are_refused_naming_the_entry(weights: list, strategy: int, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_request(request(strategy=strategy, member_weights=weights))


def test_a_search_plan_may_call_every_model_up_to_its_calls() -> None:
    plan = build_plan(request(strategy=common_pb2.STRATEGY_SEARCH), MODELS, 0.9, 0.7, default_max_calls=8)
    assert (plan.strategy, plan.max_calls) == (common_pb2.STRATEGY_SEARCH, 8)
    assert [s.model.name for s in plan.steps] == ["cheap", "mid", "heavy"]
    assert build_plan(request(strategy=common_pb2.STRATEGY_SEARCH, max_calls=3), MODELS, 0.9).max_calls == 3
    assert build_plan(request(), MODELS, 0.9).max_calls == 0  # other strategies carry none


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": 65}, r"max_calls 65 is outside \[0, 64\]"),
        ({"strategy": common_pb2.STRATEGY_SEARCH, "max_calls": -1}, r"max_calls -1 is outside"),
        ({"max_calls": 4}, "max_calls may be set only with strategy STRATEGY_SEARCH"),
    ],
)
def test_malformed_search_budgets_are_refused(fields: dict, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_request(request(**fields))


def with_complexity(info: common_pb2.ModelInfo, band: tuple[float, float] | None) -> common_pb2.ModelInfo:
    declared = common_pb2.ModelInfo()
    declared.CopyFrom(info)
    declared.complexity_model = "scorer"
    if band is not None:
        declared.expert_low, declared.expert_high = band
    return declared


ANALYSED = [with_complexity(MODELS[1], (0.0, 0.2)), with_complexity(MODELS[2], None), with_complexity(MODELS[0], (0.2, 1.0))]


def test_an_analysed_cascade_carries_the_complexity_model_and_the_skip_score() -> None:
    plan = build_plan(request(analyze_complexity=True), ANALYSED, 0.9, 0.7, skip_complexity=0.3)
    assert (plan.complexity_model, plan.skip_complexity) == ("scorer", 0.3)
    assert [s.model.name for s in plan.steps] == ["cheap", "mid", "heavy"]
    assert build_plan(request(), ANALYSED, 0.9).complexity_model == ""  # analysis costs a call: asked for only


def test_an_expert_plan_holds_the_experts_and_the_complexity_model() -> None:
    plan = build_plan(request(strategy=common_pb2.STRATEGY_EXPERT), ANALYSED, 0.9)
    assert [s.model.name for s in plan.steps] == ["cheap", "heavy"]
    assert (plan.complexity_model, plan.skip_complexity) == ("scorer", 0.0)


def test_analysis_and_experts_need_a_task_that_declares_them() -> None:
    with pytest.raises(NotFound, match="inferscale.complexity_model"):
        build_plan(request(analyze_complexity=True), MODELS, 0.9)
    with pytest.raises(NotFound, match="inferscale.expert_complexity"):
        build_plan(request(strategy=common_pb2.STRATEGY_EXPERT), MODELS, 0.9)
    with pytest.raises(InvalidArgument, match="analyze_complexity may be set only with a cascade"):
        validate_request(request(strategy=common_pb2.STRATEGY_ENSEMBLE, analyze_complexity=True))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"target_accuracy": 1.5}, r"target_accuracy 1\.5 is outside \[0, 1\]"),
        ({"target_accuracy": float("nan")}, "target_accuracy nan is outside"),
        ({"target_accuracy": 0.9, "strategy": common_pb2.STRATEGY_ENSEMBLE}, "target_accuracy may be set only with a cascade"),
        ({"target_accuracy": 0.9, "confidence_threshold": 0.8}, "target_accuracy replaces thresholds"),
    ],
)
def test_malformed_accuracy_targets_are_refused(fields: dict, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_request(request(**fields))


def test_grids_are_combined_by_best_score_in_ensembles_and_searches_and_probabilities_are_not() -> None:
    grids = [common_pb2.ModelInfo(**{**{f.name: v for f, v in m.ListFields()}, "answer_kind": "grid"}) for m in MODELS]
    for strategy in (common_pb2.STRATEGY_ENSEMBLE, common_pb2.STRATEGY_SEARCH):
        assert build_plan(request(strategy=strategy), grids, 0.9).aggregation == common_pb2.AGGREGATION_BEST_SCORE
    assert build_plan(request(strategy=common_pb2.STRATEGY_ENSEMBLE), MODELS, 0.9).aggregation == common_pb2.AGGREGATION_MEAN_PROBABILITY
    # A search over class probabilities keeps its score-weighted vote; a cascade has no aggregation.
    assert build_plan(request(strategy=common_pb2.STRATEGY_SEARCH), MODELS, 0.9).aggregation == common_pb2.AGGREGATION_UNSPECIFIED
    assert build_plan(request(), grids, 0.9).aggregation == common_pb2.AGGREGATION_UNSPECIFIED
    chosen = build_plan(request(strategy=common_pb2.STRATEGY_ENSEMBLE, aggregation=common_pb2.AGGREGATION_PLURALITY), grids, 0.9)
    assert chosen.aggregation == common_pb2.AGGREGATION_PLURALITY


def test_a_tensor_of_33_dimensions_is_refused_naming_it_rather_than_failing_in_numpy() -> None:
    # One element, four bytes: its bytes match its shape, but numpy cannot view 33 dimensions.
    deep = common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1] * 33, raw_contents=b"\0" * 4)
    with pytest.raises(InvalidArgument, match=r"inputs\[0\]\.shape has 33 dimensions, more than the 16 allowed"):
        validate_request(router_service_pb2.InferRequest(task="digits", inputs=[deep]))


def test_a_task_with_more_routable_models_than_a_plan_holds_cannot_be_planned() -> None:
    crowded = [model(f"m{index}", index, float(index)) for index in range(1, 34)]
    assert len(build_plan(request(), crowded[:32], 0.9).steps) == 32
    with pytest.raises(FailedPrecondition, match="task 'digits' has 33 routable models, more than the 32 a plan may hold"):
        build_plan(request(strategy=common_pb2.STRATEGY_ENSEMBLE), crowded, 0.9)
