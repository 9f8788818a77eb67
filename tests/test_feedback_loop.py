"""The feedback loop on real processes: feedback teaches a policy, shadow evaluation publishes it, the router applies it, and nothing is lost when the monitor restarts."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from inferscale.models.digits import load_split
from inferscale.tensors import from_numpy
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    monitor_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)
from tests.conftest import private_repository, private_suite
from tests.test_end_to_end import settled_stats
from tests.test_live_registry import eventually

pytestmark = pytest.mark.integration

LEARN, SHADOW = 240, 60


def test_a_policy_learned_from_feedback_is_published_after_shadow_applied_live_and_survives_restarts(tmp_path_factory) -> None:
    _, _, images, labels = load_split()
    images = images.astype(np.float32)
    repository = private_repository(tmp_path_factory, "feedback")
    env = {
        "INFERSCALE_POLICY_REFRESH_SECONDS": "0.2",
        "INFERSCALE_CATALOG_TTL_SECONDS": "0.2",
        # The operator's floor on a shadow run; a proposal cannot ask for less.
        "INFERSCALE_POLICY_MIN_SHADOW_REQUESTS": str(SHADOW),
    }
    with private_suite(tmp_path_factory, "feedback", repository, env) as suite:
        router_channel = suite.channel("router")
        monitor_channel = suite.channel("monitor")
        router = router_service_pb2_grpc.RouterServiceStub(router_channel)
        monitor = monitor_service_pb2_grpc.MonitorServiceStub(monitor_channel)

        def infer(index: int, **fields: object) -> router_service_pb2.InferResponse:
            request = router_service_pb2.InferRequest(task="digits", inputs=[from_numpy("IMAGE", images[index][None, :])], **fields)
            return router.Infer(request, timeout=30)

        def recorded() -> tuple[int, int]:
            stats = monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5)
            return stats.requests, sum(m.steps for m in stats.models)

        def explore_with_feedback(indices: range) -> None:
            # Every tier answers (threshold 1.0): the traffic a policy can be learned and checked on.
            settled = settled_stats(monitor)
            requests_before, steps_before = settled.requests, sum(m.steps for m in settled.models)
            responses = [infer(index, confidence_threshold=1.0, skip_cache=True) for index in indices]
            assert {r.policy_version for r in responses} == {"request"}
            # The router's and orchestrator's events arrive in their own batches: feedback waits for both.
            expected = (requests_before + len(indices), steps_before + 3 * len(indices))
            eventually(
                lambda: all(now >= want for now, want in zip(recorded(), expected, strict=True)),
                timeout_seconds=10,
                what="the requests' events to arrive",
            )
            for index, response in zip(indices, responses, strict=True):
                reply = monitor.RecordFeedback(
                    monitor_service_pb2.RecordFeedbackRequest(request_id=response.request_id, label=str(labels[index])), timeout=5
                )
                assert reply.steps_scored == 3

        before = infer(0, skip_cache=True)
        assert before.policy_version == "defaults"
        # An accuracy target before any feedback: the target itself is the threshold.
        aimed = infer(0, target_accuracy=0.97, skip_cache=True)
        assert aimed.policy_version == "target"
        assert {step.accept_threshold for step in aimed.plan.steps} == {0.97}
        explore_with_feedback(range(LEARN))
        # With feedback, the thresholds the monitor learns for that target.
        learned = monitor.GetRoutingPolicy(
            monitor_service_pb2.GetRoutingPolicyRequest(task="digits", target_accuracy=0.97), timeout=10
        )
        learned_thresholds = {t.tier: t.accept_threshold for t in learned.tier_thresholds}

        def aimed_with_feedback() -> router_service_pb2.InferResponse | None:
            response = infer(1, target_accuracy=0.97, skip_cache=True)
            return response if response.policy_version == f"digits/target-0.97/{learned.version}" else None

        aimed = eventually(aimed_with_feedback, timeout_seconds=10, what="the router to take the thresholds learned for the target")
        assert {s.tier: s.accept_threshold for s in aimed.plan.steps if s.tier in learned_thresholds} == learned_thresholds
        admin = suite.metadata("admin")
        with pytest.raises(grpc.RpcError) as raised:  # publication is the admin's: the service token is not enough
            monitor.ProposeRoutingPolicy(monitor_service_pb2.ProposeRoutingPolicyRequest(task="digits", target_accuracy=0.9), timeout=5)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as raised:
            monitor.ProposeRoutingPolicy(monitor_service_pb2.ProposeRoutingPolicyRequest(task=""), timeout=5, metadata=admin)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as raised:  # no thresholds are right on every request
            monitor.ProposeRoutingPolicy(
                monitor_service_pb2.ProposeRoutingPolicyRequest(task="digits", target_accuracy=1.0), timeout=10, metadata=admin
            )
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no thresholds reach" in raised.value.details()
        proposed = monitor.ProposeRoutingPolicy(
            monitor_service_pb2.ProposeRoutingPolicyRequest(task="digits", target_accuracy=0.9, min_shadow_requests=1),
            timeout=10,
            metadata=admin,
        ).policy
        assert proposed.state == monitor_service_pb2.POLICY_STATE_SHADOW and proposed.learned_requests == LEARN
        # Asking for a one-request shadow got the operator's floor instead.
        assert proposed.min_shadow_requests == SHADOW
        # In shadow, routers keep the defaults.
        assert infer(1, skip_cache=True).policy_version == "defaults"
        explore_with_feedback(range(LEARN, LEARN + SHADOW))
        current = monitor.GetPublishedRoutingPolicy(monitor_service_pb2.GetPublishedRoutingPolicyRequest(task="digits"), timeout=5)
        published = current.published
        assert (published.version, published.state) == (proposed.version, monitor_service_pb2.POLICY_STATE_PUBLISHED)
        assert published.shadow_requests == SHADOW and published.shadow_accuracy >= 0.9
        label = f"digits/v{published.version}"
        thresholds = {t.tier: t.accept_threshold for t in published.tier_thresholds}

        def applied(response: router_service_pb2.InferResponse) -> bool:
            return response.policy_version == label and all(
                step.accept_threshold == thresholds[step.tier] for step in response.plan.steps if step.tier in thresholds
            )

        eventually(lambda: applied(infer(2, skip_cache=True)), timeout_seconds=10, what="the router to apply the policy")
        # The same feedback taught the ensemble's member weights; an ensemble that sets none gets them.
        weights = {w.tier: w.weight for w in published.ensemble_weights}
        assert sorted(weights) == [1, 2, 3] and weights[1] < weights[3]
        ensemble = infer(
            2, strategy=common_pb2.STRATEGY_ENSEMBLE, aggregation=common_pb2.AGGREGATION_WEIGHTED_VOTE, skip_cache=True
        )
        assert ensemble.policy_version == label
        assert {step.tier: step.weight for step in ensemble.plan.steps} == weights

        # The monitor dies: requests keep succeeding under the policy the router already has.
        suite.kill_service("monitor")
        assert all(applied(infer(index, skip_cache=True)) for index in range(3, 23))
        suite.start_service("monitor")
        monitor_channel.close()
        monitor_channel = suite.channel("monitor")
        monitor = monitor_service_pb2_grpc.MonitorServiceStub(monitor_channel)
        restored = monitor.GetPublishedRoutingPolicy(monitor_service_pb2.GetPublishedRoutingPolicyRequest(task="digits"), timeout=5)
        assert restored.published == published
        scored = {m.model.name: m for m in monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5).models}
        assert all(m.scored == LEARN + SHADOW for m in scored.values())
        assert 0.9 < scored["digits_linear"].accuracy < 1.0

        # A router that restarts picks the current policy up.
        suite.kill_service("router")
        suite.start_service("router")
        router_channel.close()
        router_channel = suite.channel("router")
        router = router_service_pb2_grpc.RouterServiceStub(router_channel)
        eventually(lambda: applied(infer(30, skip_cache=True)), timeout_seconds=10, what="the restarted router to apply the policy")
        router_channel.close()
        monitor_channel.close()


def test_the_monitor_reports_latency_quantiles_and_tritons_own_compute_per_model(router, monitor) -> None:
    _, _, images, _ = load_split()
    for index in range(5):
        request = router_service_pb2.InferRequest(
            task="digits", inputs=[from_numpy("IMAGE", images[index].astype(np.float32)[None, :])], skip_cache=True
        )
        router.Infer(request, timeout=30)

    def reported() -> monitor_service_pb2.GetStatsResponse | None:
        stats = monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5)
        triton = {t.model.name: t for t in stats.triton_models}
        linear = triton.get("digits_linear")
        return stats if linear is not None and linear.inference_count >= 5 and linear.compute_seconds > 0 else None

    stats = eventually(reported, timeout_seconds=10, what="Triton's statistics to reach the monitor")
    linear = {t.model.name: t for t in stats.triton_models}["digits_linear"]
    assert 0 < linear.mean_compute_us < 1e6 and linear.execution_count >= 5
    cascade = next(s for s in stats.strategies if s.strategy == 1)
    assert 0 < cascade.p50_latency_ms <= cascade.p95_latency_ms <= cascade.p99_latency_ms
    model = next(m for m in stats.models if m.model.name == "digits_linear")
    assert 0 < model.p50_latency_ms <= model.p99_latency_ms
