"""The monitor's RPC handlers."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
import time

import grpc

from inferscale.errors import FailedPrecondition, InvalidArgument, NotFound, grpc_errors
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.aggregates import Aggregates
from services.monitor.policy import LearnedPolicy, complete_requests, learn_thresholds
from services.monitor.policy_book import PUBLISHED, REJECTED, RETIRED, SHADOW, PolicyBook, PolicyRecord
from services.monitor.store import MonitorStore

MAX_EVENTS_PER_BATCH = 10_000
POLICY_STATES = {
    SHADOW: monitor_service_pb2.POLICY_STATE_SHADOW,
    PUBLISHED: monitor_service_pb2.POLICY_STATE_PUBLISHED,
    REJECTED: monitor_service_pb2.POLICY_STATE_REJECTED,
    RETIRED: monitor_service_pb2.POLICY_STATE_RETIRED,
}


def policy_proto(record: PolicyRecord | None) -> monitor_service_pb2.RoutingPolicy:
    """A policy as the RPCs report it; an empty message (version 0) for None."""
    if record is None:
        return monitor_service_pb2.RoutingPolicy()
    return monitor_service_pb2.RoutingPolicy(
        version=record.version,
        task=record.task,
        state=POLICY_STATES[record.state],
        tier_thresholds=[
            common_pb2.TierThresholds(tier=tier, accept_threshold=threshold) for tier, threshold in sorted(record.thresholds.items())
        ],
        target_accuracy=record.target_accuracy,
        learned_accuracy=record.learned_accuracy,
        learned_cost=record.learned_cost,
        learned_requests=record.learned_requests,
        shadow_requests=record.shadow_requests,
        shadow_accuracy=record.shadow_accuracy,
        shadow_cost=record.shadow_cost / record.shadow_requests if record.shadow_requests else 0.0,
        min_shadow_requests=record.min_shadow_requests,
        proposed_unix_ms=record.proposed_unix_ms,
        reason=record.reason,
        ensemble_weights=tier_weights(record.weights),
    )


def tier_weights(weights: dict[int, float]) -> list[common_pb2.TierWeight]:
    """The weights as the protos carry them, by tier."""
    return [common_pb2.TierWeight(tier=tier, weight=weight) for tier, weight in sorted(weights.items())]


class MonitorService(monitor_service_pb2_grpc.MonitorServiceServicer):
    """Records event batches into the aggregates and serves them."""

    def __init__(self, aggregates: Aggregates, book: PolicyBook, store: MonitorStore, *, min_shadow_requests: int) -> None:
        self._aggregates = aggregates
        self._book = book
        self._store = store
        self._min_shadow_requests = min_shadow_requests

    @grpc_errors
    async def RecordEvents(
        self, request: monitor_service_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.RecordEventsResponse:
        return monitor_service_pb2.RecordEventsResponse(recorded=self._record_batch(request))

    async def StreamEvents(
        self, requests: AsyncIterator[monitor_service_pb2.StreamEventsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[monitor_service_pb2.StreamEventsResponse]:
        async for request in requests:
            try:
                yield monitor_service_pb2.StreamEventsResponse(recorded=self._record_batch(request))
            except InvalidArgument as error:
                await context.abort(error.code, str(error))

    def _record_batch(
        self, request: monitor_service_pb2.RecordEventsRequest | monitor_service_pb2.StreamEventsRequest
    ) -> int:
        if len(request.events) > MAX_EVENTS_PER_BATCH:
            raise InvalidArgument(f"events holds {len(request.events)} events, more than the {MAX_EVENTS_PER_BATCH} allowed")
        if request.dropped_since_last_batch < 0:
            raise InvalidArgument(f"dropped_since_last_batch {request.dropped_since_last_batch} must not be negative")
        return self._aggregates.record(request.events, request.dropped_since_last_batch)

    @grpc_errors
    async def GetStats(
        self, request: monitor_service_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.GetStatsResponse:
        return self._aggregates.to_proto()

    @grpc_errors
    async def RecordFeedback(
        self, request: monitor_service_pb2.RecordFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.RecordFeedbackResponse:
        if not request.request_id:
            raise InvalidArgument("request_id must name a request the router answered")
        if not request.label:
            raise InvalidArgument("label must hold the correct answer, for example '7'")
        try:
            scored, correct = self._aggregates.feedback(request.request_id, request.label)
        except KeyError:
            raise NotFound(
                f"request_id {request.request_id!r} is not remembered: unknown, already scored, or older than the "
                "latest 100,000 requests"
            ) from None
        if scored.steps:
            self._store.add_scored(scored)
            self._book.observe(scored.task, scored.policy_steps())
        return monitor_service_pb2.RecordFeedbackResponse(steps_scored=len(scored.steps), answer_correct=correct)

    def _learn(self, task: str, target: float) -> tuple[LearnedPolicy, list[int]]:
        if math.isnan(target) or not 0.0 <= target <= 1.0:
            raise InvalidArgument(f"target_accuracy {target} is outside [0, 1] (0 means the top tier's accuracy)")
        data = self._aggregates.learning_data(task)
        try:
            policy = learn_thresholds(data, target or None)
        except ValueError as error:
            raise FailedPrecondition(str(error)) from None
        return policy, sorted({step.tier for step in complete_requests(data)[0]})

    @grpc_errors
    async def GetRoutingPolicy(
        self, request: monitor_service_pb2.GetRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.GetRoutingPolicyResponse:
        policy, _ = self._learn(request.task, request.target_accuracy)
        return monitor_service_pb2.GetRoutingPolicyResponse(
            version=policy.version,
            tier_thresholds=[
                common_pb2.TierThresholds(tier=tier, accept_threshold=threshold)
                for tier, threshold in sorted(policy.thresholds.items())
            ],
            target_accuracy=policy.target_accuracy,
            expected_accuracy=policy.replay.accuracy,
            expected_cost=policy.replay.mean_cost,
            requests=policy.requests,
            ensemble_weights=tier_weights(policy.weights),
        )

    @grpc_errors
    async def ProposeRoutingPolicy(
        self, request: monitor_service_pb2.ProposeRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.ProposeRoutingPolicyResponse:
        if not request.task:
            raise InvalidArgument("task must name the task whose cascade the policy routes")
        if request.min_shadow_requests < 0:
            raise InvalidArgument(f"min_shadow_requests {request.min_shadow_requests} must not be negative (0 means the default)")
        learned, tiers = self._learn(request.task, request.target_accuracy)
        if learned.replay.accuracy < learned.target_accuracy - 1e-12:
            # A policy that misses its target on the data it was learned from has no business in
            # shadow, where a lucky short run could publish it.
            raise FailedPrecondition(
                f"no thresholds reach the target accuracy {learned.target_accuracy:.4f} on the {learned.requests} scored "
                f"requests of task {request.task!r} (the best reaches {learned.replay.accuracy:.4f}); lower the target or "
                "send more exploration traffic with feedback"
            )
        record = self._book.propose(
            request.task, learned, tiers, request.min_shadow_requests or self._min_shadow_requests, int(time.time() * 1000)
        )
        return monitor_service_pb2.ProposeRoutingPolicyResponse(policy=policy_proto(record))

    @grpc_errors
    async def GetPublishedRoutingPolicy(
        self, request: monitor_service_pb2.GetPublishedRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.GetPublishedRoutingPolicyResponse:
        if not request.task:
            raise InvalidArgument("task must name a task, for example 'digits'")
        return monitor_service_pb2.GetPublishedRoutingPolicyResponse(
            published=policy_proto(self._book.published(request.task)), shadow=policy_proto(self._book.shadow(request.task))
        )
