"""The cache levels on a request's way through the real suite: semantic neighbours (L1), per-model outputs (L3), statistics."""

from __future__ import annotations

from functools import cache as memoize

import grpc
import numpy as np
import pytest

from inferscale.models.digits import load_model
from inferscale.models.intents import INTENTS
from inferscale.tensors import bytes_tensor
from inferscale.suite import Suite
from inferscale.v1 import common_pb2, orchestrator_service_pb2, router_service_pb2, router_service_pb2_grpc
from tests.conftest import MODEL_REPOSITORY
from tests.test_end_to_end import holdout, infer, wait_for_stats

pytestmark = pytest.mark.integration
L1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
L3 = common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT
L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT


def unit(vector: np.ndarray) -> list[float]:
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


@memoize
def two_images_of_different_digits() -> tuple[np.ndarray, np.ndarray]:
    """A 3 and an 8 that every digits model gets right, made unique to this file."""
    images, labels = holdout()
    names = ("digits_linear", "digits_mlp", "digits_ensemble")
    right = np.all([load_model(n, MODEL_REPOSITORY / n / "1").predict_proba(images).argmax(axis=1) == labels for n in names], axis=0)
    first = int(np.flatnonzero(right & (labels == 3))[3])
    second = int(np.flatnonzero(right & (labels == 8))[3])
    # Offsets in 64ths that no other test file uses: an exact repeat of another test's image
    # would be served from the final-result cache there.
    return images[first] + 1 / 64, images[second] + 1 / 64


def test_a_near_neighbour_is_served_from_the_semantic_cache_and_its_audit_counts_a_false_hit(router, monitor) -> None:
    three, eight = two_images_of_different_digits()
    rng = np.random.default_rng(11)
    embedding = rng.standard_normal(32)
    first = infer(router, three, embedding=unit(embedding))
    assert first.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and first.answer.label == "3"
    # Another image (an exact-key miss) whose caller-given embedding is a near neighbour: served
    # the neighbour's answer, which for this image is wrong, as the audit finds.
    second = infer(router, eight, embedding=unit(embedding + 0.05 * rng.standard_normal(32)))
    assert second.cache_level == L1
    assert second.semantic_similarity > 0.85
    assert second.answer == first.answer and second.total_cost == 0 and second.computed_cost == first.total_cost
    # A far embedding misses.
    third = infer(router, eight, embedding=unit(rng.standard_normal(32)), confidence_threshold=0.95)
    assert third.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and third.answer.label == "8"
    stats = wait_for_stats(monitor, lambda s: any(c.level == L1 and c.false_hits >= 1 for c in s.cache_levels))
    l1 = {c.level: c for c in stats.cache_levels}[L1]
    assert l1.hits >= 1 and l1.audited >= 1 and l1.false_hits >= 1


def test_a_malformed_embedding_is_refused_before_any_work(router) -> None:
    three, _ = two_images_of_different_digits()
    for embedding, named in (([0.0] * 8, "all zeros"), ([float("nan")] * 8, "NaN"), ([1.0] * 5000, "5000 values")):
        with pytest.raises(grpc.RpcError) as raised:
            infer(router, three, embedding=embedding)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and named in raised.value.details()


def test_verification_keeps_a_neighbour_that_disagrees_from_being_served(suite: Suite, router, tmp_path) -> None:
    three, eight = two_images_of_different_digits()
    embedding = unit(np.arange(1, 17, dtype=np.float64))
    assert infer(router, three + 3 / 64, embedding=embedding).answer.label == "3"
    # A second router on the same orchestrator and cache, with verification on.
    # It shares the suite's tokens: its services are the suite's, and its client the same caller.
    verifying = Suite(ports=suite.ports.__class__.free(), triton_url=suite.triton_url, log_dir=tmp_path, credentials=suite.credentials, env={
        "OTEL_TRACES_EXPORTER": "none",
        "INFERSCALE_SEMANTIC_VERIFY": "on",
        "INFERSCALE_ORCHESTRATOR_ADDRESS": suite.address("orchestrator"),
        "INFERSCALE_CACHE_ADDRESS": suite.address("cache"),
        "INFERSCALE_MONITOR_ADDRESS": suite.address("monitor"),
    })
    verifying.start_service("router")
    try:
        with verifying.channel("router") as channel:
            stub = router_service_pb2_grpc.RouterServiceStub(channel)
            # Close to the 3's embedding, but the 3 stays the nearest neighbour of the 3's own.
            rejected = infer(stub, eight + 3 / 64, embedding=unit(np.arange(1, 17, dtype=np.float64) + 5 * np.eye(16)[0]))
            agreed = infer(stub, three + 5 / 64, embedding=embedding)
    finally:
        verifying.stop()
    assert rejected.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and rejected.answer.label == "8"
    assert agreed.cache_level == L1 and agreed.answer.label == "3"
    # Verifying ran the cheapest model: that is what the served hit cost.
    assert 0 < agreed.total_cost <= min(s.cost for s in agreed.plan.steps)


def test_a_costly_models_output_is_reused_across_plans_from_the_per_model_cache(router) -> None:
    image = holdout()[0][40] + 7 / 64
    ensemble = infer(router, image, strategy=common_pb2.STRATEGY_ENSEMBLE)
    heavy = max(ensemble.steps, key=lambda s: s.cost)
    assert heavy.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and heavy.cost >= 2
    # A cascade that must reach the top tier is another plan (an L4 miss); its top step reuses
    # the ensemble member's output, while the cheap tiers (below the L3 cost floor) run again.
    cascade = infer(router, image, confidence_threshold=1.0)
    assert cascade.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    top = cascade.steps[-1]
    assert (top.model.name, top.cache_level, top.cost) == (heavy.model.name, L3, 0.0)
    assert top.answer == heavy.answer
    assert all(s.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and s.cost > 0 for s in cascade.steps[:-1])
    assert cascade.total_cost == pytest.approx(sum(s.cost for s in cascade.steps[:-1]))


def test_the_cache_reports_each_levels_size_and_savings_to_the_monitor(router, monitor) -> None:
    image = holdout()[0][41] + 7 / 64
    infer(router, image)
    infer(router, image)
    stats = wait_for_stats(
        monitor, lambda s: any(c.level == L4 and c.entries > 0 and c.bytes > 0 and c.compute_saved > 0 for c in s.cache_levels)
    )
    l4 = {c.level: c for c in stats.cache_levels}[L4]
    assert l4.entries > 0 and l4.bytes > 0 and l4.compute_saved > 0


def intent(router, text: str, **fields: object) -> router_service_pb2.InferResponse:
    request = router_service_pb2.InferRequest(task="intents", inputs=[bytes_tensor("TEXT", [text])], **fields)
    return router.Infer(request, timeout=30)


def test_text_is_embedded_on_triton_and_a_rewording_is_served_but_the_opposite_command_is_not(router) -> None:
    on = intent(router, "turn on the hallway lights")
    assert on.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert INTENTS[int(on.answer.label)] == "lights_on"
    # The embedding model ran for the lookup: its cost is part of what the request spent.
    assert on.total_cost > on.computed_cost > 0
    shouted = intent(router, "TURN ON THE HALLWAY LIGHTS")
    assert shouted.cache_level == L1 and shouted.answer == on.answer and shouted.semantic_similarity >= 0.98
    off = intent(router, "turn off the hallway lights")
    assert off.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert INTENTS[int(off.answer.label)] == "lights_off"


def test_an_embedding_is_computed_once_and_then_served_from_the_intermediate_level(orchestrator) -> None:
    request = orchestrator_service_pb2.EmbedRequest(model_name="text_embedding", input=bytes_tensor("TEXT", ["lock the cellar door"]))
    first = orchestrator.Embed(request, timeout=30)
    second = orchestrator.Embed(request, timeout=30)
    assert len(first.embedding) == 384 and first.cost > 0 and first.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert (second.cache_level, second.cost) == (common_pb2.CACHE_LEVEL_L2_INTERMEDIATE, 0.0)
    assert list(second.embedding) == list(first.embedding)
    with pytest.raises(grpc.RpcError) as raised:
        orchestrator.Embed(orchestrator_service_pb2.EmbedRequest(model_name="digits_linear", input=request.input), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "not a ready embedding model" in raised.value.details()
