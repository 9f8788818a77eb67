"""The monitor's RPC handlers."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

import grpc

from inferscale.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, grpc_errors, refuse
from inferscale.v1 import common_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.aggregates import Aggregates
from services.monitor.policy import LearnedPolicy, ScoredStep, complete_requests, learn_thresholds
from services.monitor.policy_book import PUBLISHED, REJECTED, RETIRED, SHADOW, PolicyBook, PolicyRecord
from services.monitor.store import MonitorStore

MAX_EVENTS_PER_BATCH = 10_000
# The longest request id an event or feedback may carry: the router's 128 characters and the
# suffix of a verification or an audit. Each remembered request keeps its id.
MAX_REQUEST_ID_CHARS = 256
# The longest task name a request event or a policy call may carry, as the router's bound.
MAX_TASK_CHARS = 128
# Learned policies kept, by (task, target): routers ask for the same few again on every refresh.
MAX_LEARNED_POLICIES = 256
# Learnings queued or running at once, by (task, target). Past it a new (task, target) is refused
# at once with RESOURCE_EXHAUSTED rather than queued: clients choose targets, and an unbounded
# queue of learnings would make every router wait past its deadline.
MAX_LEARNINGS_IN_FLIGHT = 16
# The largest count a batch may carry (dropped_since_last_batch, a cache level's counters and its
# compute_saved, a step's tokens): exact as a double, as Prometheus reads it; the sums of GetStats saturate.
MAX_EVENT_COUNT = 2**53
# The largest latency (milliseconds) or cost (relative units) an event may carry: far past any
# real one, and small enough that no sum of them reaches infinity.
MAX_EVENT_AMOUNT = 1e12
# The longest cache replica identifier (host and process id) a cache_stats event may carry.
MAX_REPLICA_CHARS = 512
# The cache replica counters of a cache_stats event's levels.
LEVEL_COUNTERS = ("hits", "misses", "entries", "bytes", "max_bytes", "evictions", "removals", "compute_saved")
STRATEGIES = frozenset(common_pb2.Strategy.values())
CACHE_LEVELS = frozenset(common_pb2.CacheLevel.values())
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


def _bound_chars(field: str, value: str, most: int) -> None:
    """Refuses a string field longer than ``most`` characters, naming it."""
    if len(value) > most:
        raise InvalidArgument(f"{field} has {len(value)} characters, more than {most}")


def _bound_number(field: str, value: float, most: float, most_text: str) -> None:
    """Refuses a number outside [0, ``most``], NaN included, naming it."""
    if not 0 <= value <= most:
        raise InvalidArgument(f"{field} {value} is outside [0, {most_text}]")


def _bound_confidence(field: str, value: float) -> None:
    _bound_number(field, value, 1.0, "1")


def _bound_amount(field: str, value: float) -> None:
    _bound_number(field, value, MAX_EVENT_AMOUNT, f"{MAX_EVENT_AMOUNT:g}")


def _bound_count(field: str, value: float) -> None:
    _bound_number(field, value, MAX_EVENT_COUNT, "2**53")


def _known(field: str, value: int, known: frozenset[int], enum: str) -> None:
    """Refuses an enum value that names none of the enum's members (the metrics name each one)."""
    if value not in known:
        raise InvalidArgument(f"{field} {value} is not a {enum} value")


def check_event(index: int, event: monitor_service_pb2.Event) -> None:
    """Refuses an event holding a number outside its documented range or an unknown enum value (the
    aggregates add up and bin the numbers, the metrics name the enums), naming it as events[index].field."""
    at = f"events[{index}]"
    _bound_chars(f"{at}.request_id", event.request_id, MAX_REQUEST_ID_CHARS)
    kind = event.WhichOneof("kind")
    if kind == "request":
        request = event.request
        _bound_chars(f"{at}.request.task", request.task, MAX_TASK_CHARS)
        _known(f"{at}.request.strategy", request.strategy, STRATEGIES, "Strategy")
        _bound_amount(f"{at}.request.latency_ms", request.latency_ms)
        _bound_amount(f"{at}.request.total_cost", request.total_cost)
        _bound_confidence(f"{at}.request.answer.confidence", request.answer.confidence)
    elif kind == "step":
        step = event.step.step
        _bound_confidence(f"{at}.step.step.answer.confidence", step.answer.confidence)
        _bound_amount(f"{at}.step.step.latency_ms", step.latency_ms)
        _bound_amount(f"{at}.step.step.cost", step.cost)
        _bound_count(f"{at}.step.step.usage.input_tokens", step.usage.input_tokens)
        _bound_count(f"{at}.step.step.usage.output_tokens", step.usage.output_tokens)
    elif kind == "cache":
        _known(f"{at}.cache.level", event.cache.level, CACHE_LEVELS, "CacheLevel")
    elif kind == "cache_stats":
        _bound_chars(f"{at}.cache_stats.replica", event.cache_stats.replica, MAX_REPLICA_CHARS)
        for level_index, stats in enumerate(event.cache_stats.levels):
            level_at = f"{at}.cache_stats.levels[{level_index}]"
            _known(f"{level_at}.level", stats.level, CACHE_LEVELS, "CacheLevel")
            for counter in LEVEL_COUNTERS:
                _bound_count(f"{level_at}.{counter}", getattr(stats, counter))


def check_batch(request: monitor_service_pb2.RecordEventsRequest | monitor_service_pb2.StreamEventsRequest) -> None:
    """Refuses a batch past a bound or holding an event the aggregates could not add up, before any of it is recorded."""
    if len(request.events) > MAX_EVENTS_PER_BATCH:
        raise InvalidArgument(f"events holds {len(request.events)} events, more than the {MAX_EVENTS_PER_BATCH} allowed")
    if request.dropped_since_last_batch < 0:
        raise InvalidArgument(f"dropped_since_last_batch {request.dropped_since_last_batch} must not be negative")
    _bound_count("dropped_since_last_batch", request.dropped_since_last_batch)
    for index, event in enumerate(request.events):
        check_event(index, event)


def _learned_with_tiers(
    data: Sequence[Sequence[ScoredStep]], target: float | None
) -> tuple[LearnedPolicy, list[int]]:
    """Learns the thresholds (see policy.learn_thresholds) and names the tiers they route; runs on a worker thread."""
    policy = learn_thresholds(data, target)
    return policy, sorted({step.tier for step in complete_requests(data)[0]})


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
        # Scored requests added since the start: a learned policy stands until feedback changes its data.
        self._feedback_generation = 0
        # (task, target) -> (the feedback generation it was learned at, the policy, the tiers it routes).
        self._learned: OrderedDict[tuple[str, float], tuple[int, LearnedPolicy, list[int]]] = OrderedDict()
        # Learnings under way, by (task, target): callers that ask while one runs share its result.
        self._in_flight: dict[tuple[str, float], asyncio.Task[tuple[LearnedPolicy, list[int]]]] = {}
        # One learning at a time, on a worker thread: event intake on the loop never waits for it.
        self._learning = asyncio.Lock()

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
                recorded = self._record_batch(request)
            except InvalidArgument as error:
                refuse(context, error.code, str(error))
                return
            yield monitor_service_pb2.StreamEventsResponse(recorded=recorded)

    def _record_batch(
        self, request: monitor_service_pb2.RecordEventsRequest | monitor_service_pb2.StreamEventsRequest
    ) -> int:
        check_batch(request)
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
        _bound_chars("request_id", request.request_id, MAX_REQUEST_ID_CHARS)
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
            self._feedback_generation += 1
            self._store.add_scored(scored)
            self._book.observe(scored.task, scored.policy_steps())
        return monitor_service_pb2.RecordFeedbackResponse(steps_scored=len(scored.steps), answer_correct=correct)

    async def _learn(self, task: str, target: float) -> tuple[LearnedPolicy, list[int]]:
        """The policy learned for ``task`` at ``target`` and the tiers it routes: the one learned
        since the latest feedback when there is one, else the one under way or a new learning."""
        _bound_chars("task", task, MAX_TASK_CHARS)
        if math.isnan(target) or not 0.0 <= target <= 1.0:
            raise InvalidArgument(f"target_accuracy {target} is outside [0, 1] (0 means the top tier's accuracy)")
        key = (task, target)
        known = self._learned.get(key)
        if known is not None and known[0] == self._feedback_generation:
            self._learned.move_to_end(key)
            return known[1], known[2]
        running = self._in_flight.get(key)
        if running is None and len(self._in_flight) >= MAX_LEARNINGS_IN_FLIGHT:
            raise ResourceExhausted(
                f"{len(self._in_flight)} policy learnings are queued or running, the most allowed; ask again later"
            )
        if running is None:
            running = self._in_flight[key] = asyncio.create_task(self._learn_in_background(key))
            # Its outcome is read here even when every caller has gone, so that none goes unretrieved.
            running.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: a caller that gives up (a router's deadline) leaves the learning to finish into the memo.
        return await asyncio.shield(running)

    async def _learn_in_background(self, key: tuple[str, float]) -> tuple[LearnedPolicy, list[int]]:
        """Learns ``key``'s policy on a worker thread, once the learning before it is done, into the memo."""
        try:
            async with self._learning:
                generation = self._feedback_generation
                # Read on the loop, where events change the data; learned on the thread from this copy.
                data = self._aggregates.learning_data(key[0])
                try:
                    policy, tiers = await asyncio.to_thread(_learned_with_tiers, data, key[1] or None)
                except ValueError as error:
                    raise FailedPrecondition(str(error)) from None
            self._learned[key] = (generation, policy, tiers)
            self._learned.move_to_end(key)
            if len(self._learned) > MAX_LEARNED_POLICIES:
                self._learned.popitem(last=False)
            return policy, tiers
        finally:
            del self._in_flight[key]

    @grpc_errors
    async def GetRoutingPolicy(
        self, request: monitor_service_pb2.GetRoutingPolicyRequest, context: grpc.aio.ServicerContext
    ) -> monitor_service_pb2.GetRoutingPolicyResponse:
        policy, _ = await self._learn(request.task, request.target_accuracy)
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
        learned, tiers = await self._learn(request.task, request.target_accuracy)
        if learned.replay.accuracy < learned.target_accuracy - 1e-12:
            # A policy that misses its target on the data it was learned from has no business in
            # shadow, where a lucky short run could publish it.
            raise FailedPrecondition(
                f"no thresholds reach the target accuracy {learned.target_accuracy:.4f} on the {learned.requests} scored "
                f"requests of task {request.task!r} (the best reaches {learned.replay.accuracy:.4f}); lower the target or "
                "send more exploration traffic with feedback"
            )
        record = self._book.propose(
            request.task,
            learned,
            tiers,
            # A proposer may ask for a longer shadow, never a shorter one than the operator's floor
            # (INFERSCALE_POLICY_MIN_SHADOW_REQUESTS): a short lucky run must not publish a policy.
            max(request.min_shadow_requests, self._min_shadow_requests),
            int(time.time() * 1000),
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
