"""The monitor's RPC handlers."""

from __future__ import annotations

import math

import grpc

from inferscale.errors import FailedPrecondition, InvalidArgument, NotFound, grpc_errors
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.aggregates import Aggregates
from services.monitor.policy import learn_thresholds

MAX_EVENTS_PER_BATCH = 10_000


class MonitorService(monitor_service_pb2_grpc.MonitorServiceServicer):
    """Records event batches into the aggregates and serves them."""

    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    @grpc_errors
    async def RecordEvents(
        self, request: monitor_service_pb2.RecordEventsRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.RecordEventsResponse:
        if len(request.events) > MAX_EVENTS_PER_BATCH:
            raise InvalidArgument(f"events holds {len(request.events)} events, more than the {MAX_EVENTS_PER_BATCH} allowed")
        if request.dropped_since_last_batch < 0:
            raise InvalidArgument(f"dropped_since_last_batch {request.dropped_since_last_batch} must not be negative")
        recorded = self._aggregates.record(request.events, request.dropped_since_last_batch)
        return monitor_service_pb2.RecordEventsResponse(recorded=recorded)

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
        return monitor_service_pb2.RecordFeedbackResponse(steps_scored=scored, answer_correct=correct)

    @grpc_errors
    async def GetRoutingPolicy(
        self, request: monitor_service_pb2.GetRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.GetRoutingPolicyResponse:
        target = request.target_accuracy
        if math.isnan(target) or not 0.0 <= target <= 1.0:
            raise InvalidArgument(f"target_accuracy {target} is outside [0, 1] (0 means the top tier's accuracy)")
        try:
            policy = learn_thresholds(list(self._aggregates.scored_requests), target or None)
        except ValueError as error:
            raise FailedPrecondition(str(error)) from None
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
        )
