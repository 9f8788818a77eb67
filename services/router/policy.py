"""Which thresholds a request's plan gets: its own, the monitor's published routing policy, exploration, or the defaults.

Pure logic, no gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferscale.v1 import common_pb2, monitor_service_pb2, router_service_pb2

FROM_REQUEST = "request"
FROM_DEFAULTS = "defaults"
EXPLORATION = "exploration"
# A request's accuracy target used as its threshold, before the monitor can learn thresholds for it.
FROM_TARGET = "target"
CASCADES = (common_pb2.STRATEGY_UNSPECIFIED, common_pb2.STRATEGY_CASCADE)


@dataclass(frozen=True)
class PublishedPolicy:
    """A task's published routing policy as the router applies it."""

    task: str
    version: int
    # Accept threshold per tier; tiers without one (the last) always answer.
    thresholds: dict[int, float]
    # Per tier, its member's weight in ensembles; empty when the policy learned none.
    weights: dict[int, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How responses and spans name it: "<task>/v<version>"."""
        return f"{self.task}/v{self.version}"

    @classmethod
    def from_proto(cls, policy: monitor_service_pb2.RoutingPolicy) -> PublishedPolicy | None:
        """The policy, or None for the empty message the monitor sends when none is published."""
        if not policy.version:
            return None
        return cls(
            policy.task,
            policy.version,
            {t.tier: t.accept_threshold for t in policy.tier_thresholds},
            {w.tier: w.weight for w in policy.ensemble_weights},
        )


@dataclass(frozen=True)
class TargetPolicy:
    """The per-tier thresholds the monitor learned for a task and an accuracy target."""

    task: str
    target: float
    # The learned policy's digest (GetRoutingPolicyResponse.version).
    version: str
    thresholds: dict[int, float]

    @property
    def label(self) -> str:
        """How responses and spans name it: "<task>/target-<target>/<digest>"."""
        return f"{self.task}/target-{self.target:g}/{self.version}"


def with_policy(
    request: router_service_pb2.InferRequest,
    policy: PublishedPolicy | None,
    explore: bool,
    target: TargetPolicy | None = None,
) -> tuple[router_service_pb2.InferRequest, str]:
    """Returns the request to plan from and what set its thresholds.

    A request that sets any threshold keeps them; policies and exploration apply only to
    cascades. Exploration runs every tier (threshold 1.0), so that feedback on it can teach and
    check policies; its answer is the top tier's. An ensemble that sets no member weights gets
    the policy's learned ones. A request with an accuracy target gets the thresholds learned for
    it (``target``), or, before there are any, the target as its confidence threshold.
    """
    if request.target_accuracy:
        aimed = router_service_pb2.InferRequest()
        aimed.CopyFrom(request)
        aimed.target_accuracy = 0.0
        if target is None:
            aimed.confidence_threshold = request.target_accuracy
            return aimed, FROM_TARGET
        aimed.tier_thresholds.extend(
            common_pb2.TierThresholds(tier=tier, accept_threshold=threshold) for tier, threshold in sorted(target.thresholds.items())
        )
        return aimed, target.label
    if request.strategy == common_pb2.STRATEGY_ENSEMBLE:
        if request.member_weights:
            return request, FROM_REQUEST
        if policy is None or not policy.weights:
            return request, FROM_DEFAULTS
        weighted = router_service_pb2.InferRequest()
        weighted.CopyFrom(request)
        weighted.member_weights.extend(
            common_pb2.TierWeight(tier=tier, weight=weight) for tier, weight in sorted(policy.weights.items())
        )
        return weighted, policy.label
    if request.confidence_threshold or request.escalate_threshold or request.tier_thresholds:
        return request, FROM_REQUEST
    if request.strategy not in CASCADES or (policy is None and not explore):
        return request, FROM_DEFAULTS
    planned = router_service_pb2.InferRequest()
    planned.CopyFrom(request)
    if explore:
        planned.confidence_threshold = 1.0
        return planned, EXPLORATION
    assert policy is not None
    planned.tier_thresholds.extend(
        common_pb2.TierThresholds(tier=tier, accept_threshold=threshold) for tier, threshold in sorted(policy.thresholds.items())
    )
    return planned, policy.label
