"""How the router picks a plan's thresholds: the request's own, a published policy, exploration, or its defaults."""

from __future__ import annotations

from inferscale.v1 import common_pb2, monitor_service_pb2, router_service_pb2
from services.router.policy import PublishedPolicy, TargetPolicy, with_policy

POLICY = PublishedPolicy("digits", 3, {1: 0.95, 2: 0.8})


def test_a_published_policy_sets_a_cascades_tier_thresholds_and_names_itself() -> None:
    request = router_service_pb2.InferRequest(task="digits")
    planned, source = with_policy(request, POLICY, explore=False)
    assert source == "digits/v3"
    assert [(t.tier, t.accept_threshold) for t in planned.tier_thresholds] == [(1, 0.95), (2, 0.8)]
    assert not request.tier_thresholds  # the caller's request is left as it was


def test_a_requests_own_thresholds_win_and_other_strategies_keep_the_defaults() -> None:
    own = router_service_pb2.InferRequest(task="digits", confidence_threshold=0.5)
    assert with_policy(own, POLICY, explore=True) == (own, "request")
    single = router_service_pb2.InferRequest(task="digits", strategy=common_pb2.STRATEGY_SINGLE, model_name="m")
    assert with_policy(single, POLICY, explore=True) == (single, "defaults")
    assert with_policy(router_service_pb2.InferRequest(task="digits"), None, explore=False)[1] == "defaults"


def test_exploration_runs_every_tier() -> None:
    planned, source = with_policy(router_service_pb2.InferRequest(task="digits"), POLICY, explore=True)
    assert (source, planned.confidence_threshold, list(planned.tier_thresholds)) == ("exploration", 1.0, [])


def test_the_empty_message_means_no_policy() -> None:
    assert PublishedPolicy.from_proto(monitor_service_pb2.RoutingPolicy()) is None
    policy = monitor_service_pb2.RoutingPolicy(
        version=3, task="digits", tier_thresholds=[common_pb2.TierThresholds(tier=1, accept_threshold=0.95)]
    )
    assert PublishedPolicy.from_proto(policy) == PublishedPolicy("digits", 3, {1: 0.95})


WEIGHTED = PublishedPolicy("digits", 4, {1: 0.9}, {1: 2.9, 2: 3.8, 3: 4.8})


def test_a_published_policy_weighs_an_ensembles_members_unless_the_request_does() -> None:
    ensemble = router_service_pb2.InferRequest(task="digits", strategy=common_pb2.STRATEGY_ENSEMBLE)
    planned, source = with_policy(ensemble, WEIGHTED, explore=True)  # exploration is for cascades only
    assert source == "digits/v4"
    assert [(w.tier, w.weight) for w in planned.member_weights] == [(1, 2.9), (2, 3.8), (3, 4.8)]
    assert not ensemble.member_weights
    own = router_service_pb2.InferRequest(
        task="digits", strategy=common_pb2.STRATEGY_ENSEMBLE, member_weights=[common_pb2.TierWeight(tier=1, weight=1.0)]
    )
    assert with_policy(own, WEIGHTED, explore=False) == (own, "request")
    assert with_policy(ensemble, POLICY, explore=False) == (ensemble, "defaults")  # a policy without weights


def test_a_policys_weights_come_from_its_proto() -> None:
    policy = monitor_service_pb2.RoutingPolicy(
        version=4, task="digits", ensemble_weights=[common_pb2.TierWeight(tier=2, weight=3.8)]
    )
    assert PublishedPolicy.from_proto(policy) == PublishedPolicy("digits", 4, {}, {2: 3.8})


def test_an_accuracy_target_takes_the_thresholds_learned_for_it_or_serves_as_the_threshold() -> None:
    aimed = router_service_pb2.InferRequest(task="digits", target_accuracy=0.98)
    learned = TargetPolicy("digits", 0.98, "abc123", {1: 0.85, 2: 0.8})
    planned, source = with_policy(aimed, POLICY, explore=True, target=learned)  # the target wins over both
    assert source == "digits/target-0.98/abc123"
    assert [(t.tier, t.accept_threshold) for t in planned.tier_thresholds] == [(1, 0.85), (2, 0.8)]
    assert planned.target_accuracy == 0.0 and aimed.target_accuracy == 0.98
    fallback, source = with_policy(aimed, POLICY, explore=False, target=None)
    assert (source, fallback.confidence_threshold, list(fallback.tier_thresholds)) == ("target", 0.98, [])
