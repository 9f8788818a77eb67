"""The bounds of docs/limits.md: each refuses what passes it with a status naming the field, before
the work that grows with it, and a hostile request leaves the suite serving."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import inferscale.tensors as tensors
import services.monitor.service as monitor_service
import services.router.service as router_service
from inferscale.errors import InvalidArgument
from inferscale.tensors import from_numpy, validate_tensor
from inferscale.v1 import (
    cache_service_pb2,
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    router_service_pb2,
)
from services.cache.levels import LocalLevel
from services.cache.semantic import SemanticLevel
from services.cache.service import CacheService
from services.monitor.aggregates import MAX_SCORED_REQUESTS, Aggregates, ScoredModelStep, ScoredRequest
from services.monitor.metrics import AggregatesCollector
from services.monitor.policy_book import PolicyBook
from services.monitor.service import MonitorService
from services.monitor.store import MonitorStore
from services.router.planning import validate_request

IMAGE = from_numpy("IMAGE", np.zeros((1, 64), np.float32))
# Some 450 kB on the wire; the product of its dimensions has three million bits.
HOSTILE_SHAPE = [2**62] * 50_000


class Refused(Exception):
    """How a servicer refused the call: the status a client would see."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class AbortingContext:
    """The part of grpc.aio.ServicerContext that inferscale.errors.refuse uses, raising the refusal
    once it is complete so that the test sees it."""

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        raise Refused(self._code, details)


def refusal(call) -> Refused:  # type: ignore[no-untyped-def]
    """Runs a servicer coroutine; returns how it was refused."""
    with pytest.raises(Refused) as raised:
        asyncio.run(call)
    return raised.value


# --- tensors (inferscale/tensors.py) ---------------------------------------------------------


def test_a_tensor_of_more_dimensions_than_allowed_is_refused_by_their_count() -> None:
    validate_tensor(common_pb2.InferTensor(name="X", datatype="FP32", shape=[1] * 16, raw_contents=b"\0" * 4), "x")
    # The product of these dimensions is astronomically large: the count refuses them first.
    tensor = common_pb2.InferTensor(name="X", datatype="FP32", shape=[2**62] * 17)
    with pytest.raises(InvalidArgument, match=r"^x\.shape has 17 dimensions, more than the 16 allowed$"):
        validate_tensor(tensor, "x")


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_a_tensor_of_more_elements_than_allowed_is_refused_before_its_bytes_are_read(datatype: str) -> None:
    tensor = common_pb2.InferTensor(name="X", datatype=datatype, shape=[2**40, 2**40], raw_contents=b"\0" * 8)
    with pytest.raises(InvalidArgument, match=rf"x\.shape holds more than the {2**24} elements a tensor may have"):
        validate_tensor(tensor, "x")


def test_a_tensor_of_more_bytes_than_allowed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensors, "MAX_TENSOR_BYTES", 16)
    validate_tensor(from_numpy("X", np.zeros(4, np.float32)), "x")
    with pytest.raises(InvalidArgument, match=r"x\.raw_contents has 20 bytes, more than the 16 allowed"):
        validate_tensor(from_numpy("X", np.zeros(5, np.float32)), "x")


# --- the router's request (services/router/planning.py) ---------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inputs": [IMAGE] * 33}, r"inputs holds 33 entries, more than the 32 allowed"),
        (
            {"tier_thresholds": [common_pb2.TierThresholds(tier=t, accept_threshold=0.9) for t in range(1, 34)]},
            r"tier_thresholds holds 33 entries, more than the 32 allowed",
        ),
        (
            {
                "strategy": common_pb2.STRATEGY_ENSEMBLE,
                "member_weights": [common_pb2.TierWeight(tier=t, weight=1.0) for t in range(1, 34)],
            },
            r"member_weights holds 33 entries, more than the 32 allowed",
        ),
        ({"task": "t" * 129}, r"task has 129 characters, more than 128"),
        ({"request_id": "r" * 129}, r"request_id has 129 characters, more than 128"),
    ],
)
def test_the_router_refuses_a_request_past_a_bound_naming_the_field(fields: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_request(router_service_pb2.InferRequest(**{"task": "digits", "inputs": [IMAGE], **fields}))


# --- the cache (services/cache/service.py) ------------------------------------------------------


class UnreachableSemanticLevel:
    """A semantic level that fails the test if a request reaches it."""

    def lookup(self, *args: object) -> None:
        raise AssertionError("an oversized embedding reached the semantic level")

    def store(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("an oversized embedding reached the semantic level")


def test_the_cache_refuses_an_oversized_embedding_before_the_semantic_level_sees_it() -> None:
    service = CacheService({}, UnreachableSemanticLevel(), default_semantic_threshold=0.9)  # type: ignore[arg-type]
    embedding = [1.0] * 4097
    looked_up = refusal(
        service.SemanticLookup(cache_service_pb2.SemanticLookupRequest(namespace="n", embedding=embedding), AbortingContext())
    )
    stored = refusal(
        service.SemanticStore(cache_service_pb2.SemanticStoreRequest(namespace="n", embedding=embedding), AbortingContext())
    )
    for refused in (looked_up, stored):
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.details == "embedding has 4097 values, more than the 4096 allowed"


def cache_with_levels() -> tuple[CacheService, LocalLevel, SemanticLevel]:
    l3 = LocalLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    l1 = SemanticLevel(max_bytes=1 << 20, default_ttl_seconds=60)
    return CacheService({common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT: l3}, l1, default_semantic_threshold=0.9), l3, l1


def made_by(*names: str) -> cache_service_pb2.CacheEntry:
    return cache_service_pb2.CacheEntry(value=b"v", produced_by=[common_pb2.ModelRef(name=name, version=1) for name in names])


def cache_store(service: CacheService, entry: cache_service_pb2.CacheEntry, semantic: bool):  # type: ignore[no-untyped-def]
    if semantic:
        return service.SemanticStore(
            cache_service_pb2.SemanticStoreRequest(namespace="n", embedding=[1.0, 0.0], entry=entry), AbortingContext()
        )
    return service.Store(
        cache_service_pb2.StoreRequest(level=common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT, key="k", entry=entry), AbortingContext()
    )


@pytest.mark.parametrize("semantic", [False, True], ids=["Store", "SemanticStore"])
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (made_by(*[f"m{n}" for n in range(66)]), "entry.produced_by holds 66 models, more than the 65 allowed"),
        (made_by("cheap", "m" * 257), "entry.produced_by[1].name has 257 characters, more than 256"),
    ],
)
def test_the_cache_refuses_produced_by_past_its_bounds_naming_the_field(
    entry: cache_service_pb2.CacheEntry, message: str, semantic: bool
) -> None:
    service, l3, l1 = cache_with_levels()
    refused = refusal(cache_store(service, entry, semantic))
    assert (refused.code, refused.details) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert (l3.store.entries, l1.entries) == (0, 0)
    # At the bounds, it is kept, and its models count in the level's bytes.
    asyncio.run(cache_store(service, made_by(*[f"{n:03}".ljust(256, "m") for n in range(65)]), semantic))
    level_bytes = l1.bytes_used if semantic else l3.store.bytes_used
    assert level_bytes > 65 * 256


# --- the monitor (services/monitor/service.py) --------------------------------------------------


def monitor(scored: int = 0, aggregates: Aggregates | None = None) -> MonitorService:
    """A monitor whose learner has ``scored`` two-tier requests of task digits, as feedback would give it."""
    aggregates = aggregates if aggregates is not None else Aggregates()
    for index in range(scored):
        right = index % 10 != 0
        cheap = ScoredModelStep("cheap", 1, 1, 0.95 if right else 0.9, right, 1.0)
        aggregates.add_scored(ScoredRequest("digits", (cheap, ScoredModelStep("strong", 1, 2, 0.99, True, 10.0))))
    store = MonitorStore(":memory:", MAX_SCORED_REQUESTS)
    return MonitorService(aggregates, PolicyBook(lambda record: None), store, min_shadow_requests=10)


def events(*batch: monitor_service_pb2.Event) -> monitor_service_pb2.RecordEventsRequest:
    return monitor_service_pb2.RecordEventsRequest(events=batch)


def ask(target: float = 0.0) -> monitor_service_pb2.GetRoutingPolicyRequest:
    return monitor_service_pb2.GetRoutingPolicyRequest(task="digits", target_accuracy=target)


class Learnings:
    """Stands in for the monitor's learn_thresholds: records each learning's target, runs
    ``before`` on the thread that learns, then learns."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.targets: list[float | None] = []
        self.before: Callable[[], None] = lambda: None
        learn = monitor_service.learn_thresholds

        def recorded(data, target):  # type: ignore[no-untyped-def]
            self.targets.append(target)
            self.before()
            return learn(data, target)

        monkeypatch.setattr(monitor_service, "learn_thresholds", recorded)


@pytest.fixture
def learnings(monkeypatch: pytest.MonkeyPatch) -> Learnings:
    return Learnings(monkeypatch)


def waits_for(event: threading.Event, what: str) -> Callable[[], None]:
    """A ``before`` that waits for ``event``. On the event loop it would wait forever, as the loop
    could not set it: the timeout only turns that hang into a failure."""

    def wait() -> None:
        if not event.wait(timeout=30):
            raise AssertionError(f"{what}: the learning ran on the event loop")

    return wait


@pytest.mark.parametrize(
    ("request_message", "message"),
    [
        (events(*[monitor_service_pb2.Event()] * 10_001), "events holds 10001 events, more than the 10000 allowed"),
        (
            events(monitor_service_pb2.Event(), monitor_service_pb2.Event(request_id="r" * 257)),
            "events[1].request_id has 257 characters, more than 256",
        ),
        (
            events(monitor_service_pb2.Event(request=monitor_service_pb2.RequestEvent(task="t" * 129))),
            "events[0].request.task has 129 characters, more than 128",
        ),
    ],
)
def test_the_monitor_refuses_a_batch_past_a_bound_and_records_none_of_it(request_message, message: str) -> None:  # type: ignore[no-untyped-def]
    service = monitor()
    refused = refusal(service.RecordEvents(request_message, AbortingContext()))
    assert (refused.code, refused.details) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    stats = asyncio.run(service.GetStats(monitor_service_pb2.GetStatsRequest(), AbortingContext()))
    assert stats.events_recorded == 0


def a_step(confidence: float = 0.5, latency_ms: float = 2.0, cost: float = 1.0) -> monitor_service_pb2.Event:
    return monitor_service_pb2.Event(
        step=monitor_service_pb2.StepEvent(
            step=common_pb2.EscalationStep(
                model=common_pb2.ModelRef(name="cheap", version=1),
                tier=1,
                answer=common_pb2.Answer(label="3", confidence=confidence),
                latency_ms=latency_ms,
                cost=cost,
            )
        )
    )


def a_request(**fields) -> monitor_service_pb2.Event:  # type: ignore[no-untyped-def]
    return monitor_service_pb2.Event(request=monitor_service_pb2.RequestEvent(**{"strategy": common_pb2.STRATEGY_CASCADE, **fields}))


def a_cache_report(replica: str = "cache-1", **counters) -> monitor_service_pb2.Event:  # type: ignore[no-untyped-def]
    level = cache_service_pb2.LevelStats(**{"level": common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT, **counters})
    return monitor_service_pb2.Event(cache_stats=monitor_service_pb2.CacheStatsEvent(replica=replica, levels=[level]))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (a_step(confidence=math.nan), "events[1].step.step.answer.confidence nan is outside [0, 1]"),
        (a_step(confidence=math.inf), "events[1].step.step.answer.confidence inf is outside [0, 1]"),
        (a_step(confidence=-1e108), "events[1].step.step.answer.confidence -1e+108 is outside [0, 1]"),
        (a_step(confidence=1.5), "events[1].step.step.answer.confidence 1.5 is outside [0, 1]"),
        (a_step(latency_ms=-1.0), "events[1].step.step.latency_ms -1.0 is outside [0, 1e+12]"),
        (a_step(cost=math.inf), "events[1].step.step.cost inf is outside [0, 1e+12]"),
        (a_request(latency_ms=math.nan), "events[1].request.latency_ms nan is outside [0, 1e+12]"),
        (a_request(total_cost=1e300), "events[1].request.total_cost 1e+300 is outside [0, 1e+12]"),
        (a_request(strategy=99), "events[1].request.strategy 99 is not a Strategy value"),
        (
            a_request(answer=common_pb2.Answer(label="3", confidence=-0.5)),
            "events[1].request.answer.confidence -0.5 is outside [0, 1]",
        ),
        (monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=99)), "events[1].cache.level 99 is not a CacheLevel value"),
        (a_cache_report(bytes=2**63 - 1), "events[1].cache_stats.levels[0].bytes 9223372036854775807 is outside [0, 2**53]"),
        (a_cache_report(entries=-1), "events[1].cache_stats.levels[0].entries -1 is outside [0, 2**53]"),
        (a_cache_report(compute_saved=math.nan), "events[1].cache_stats.levels[0].compute_saved nan is outside [0, 2**53]"),
        (a_cache_report(level=99), "events[1].cache_stats.levels[0].level 99 is not a CacheLevel value"),
        (a_cache_report(replica="r" * 513), "events[1].cache_stats.replica has 513 characters, more than 512"),
    ],
)
def test_the_monitor_refuses_a_batch_holding_a_value_it_cannot_add_up_and_records_none_of_it(
    bad: monitor_service_pb2.Event, message: str
) -> None:
    service = monitor()
    # A good event first: the batch is refused whole, not recorded up to the bad one.
    refused = refusal(service.RecordEvents(events(a_step(), bad), AbortingContext()))
    assert (refused.code, refused.details) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    stats = asyncio.run(service.GetStats(monitor_service_pb2.GetStatsRequest(), AbortingContext()))
    assert (stats.events_recorded, len(stats.models), len(stats.strategies), len(stats.cache_levels)) == (0, 0, 0, 0)


def test_the_event_stream_refuses_a_batch_holding_a_value_it_cannot_add_up() -> None:
    service = monitor()

    async def stream() -> list[monitor_service_pb2.StreamEventsResponse]:
        async def batches():  # type: ignore[no-untyped-def]
            yield monitor_service_pb2.StreamEventsRequest(events=[a_step(), a_step(confidence=math.nan)])

        return [response async for response in service.StreamEvents(batches(), AbortingContext())]

    refused = refusal(stream())
    assert (refused.code, refused.details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[1].step.step.answer.confidence nan is outside [0, 1]",
    )
    assert not asyncio.run(service.GetStats(monitor_service_pb2.GetStatsRequest(), AbortingContext())).models


def test_the_monitor_refuses_a_dropped_count_past_its_bound() -> None:
    refused = refusal(
        monitor().RecordEvents(monitor_service_pb2.RecordEventsRequest(dropped_since_last_batch=2**63 - 1), AbortingContext())
    )
    assert (refused.code, refused.details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "dropped_since_last_batch 9223372036854775807 is outside [0, 2**53]",
    )


def test_the_extremes_the_monitor_accepts_add_up_and_are_reported() -> None:
    aggregates = Aggregates()
    service = monitor(aggregates=aggregates)
    most = monitor_service.MAX_EVENT_AMOUNT
    count = monitor_service.MAX_EVENT_COUNT
    batch = monitor_service_pb2.RecordEventsRequest(
        events=[
            a_step(confidence=0.0, latency_ms=0.0, cost=0.0),
            a_step(confidence=1.0, latency_ms=most, cost=most),
            *(a_request(strategy=strategy, latency_ms=most, total_cost=most) for strategy in common_pb2.Strategy.values()),
            *(monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=level)) for level in common_pb2.CacheLevel.values()),
            *(
                a_cache_report(f"cache-{n}", **{counter: count for counter in monitor_service.LEVEL_COUNTERS})
                for n in range(3)
            ),
        ],
        dropped_since_last_batch=count,
    )
    for _ in range(2):
        asyncio.run(service.RecordEvents(batch, AbortingContext()))
    stats = asyncio.run(service.GetStats(monitor_service_pb2.GetStatsRequest(), AbortingContext()))
    assert stats.events_dropped == 2 * count
    (cheap,) = stats.models
    assert list(cheap.answers_by_confidence_bin) == [2] + [0] * 8 + [2]
    assert math.isfinite(cheap.total_cost) and math.isfinite(cheap.mean_latency_ms)
    l3 = next(s for s in stats.cache_levels if s.level == common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT)
    assert (l3.entries, l3.bytes, l3.compute_saved) == (3 * count, 3 * count, 3 * count)
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    assert "inferscale_cache_bytes" in generate_latest(registry).decode()


def test_the_monitor_refuses_feedback_and_policy_calls_past_their_bounds() -> None:
    service = monitor()
    feedback = refusal(
        service.RecordFeedback(monitor_service_pb2.RecordFeedbackRequest(request_id="r" * 257, label="7"), AbortingContext())
    )
    assert (feedback.code, feedback.details) == (grpc.StatusCode.INVALID_ARGUMENT, "request_id has 257 characters, more than 256")
    learned = refusal(
        service.GetRoutingPolicy(monitor_service_pb2.GetRoutingPolicyRequest(task="t" * 129), AbortingContext())
    )
    assert (learned.code, learned.details) == (grpc.StatusCode.INVALID_ARGUMENT, "task has 129 characters, more than 128")


def test_learning_runs_off_the_event_loop_so_events_are_recorded_while_it_runs(learnings: Learnings) -> None:
    service = monitor(scored=50)
    learning, intake_done = threading.Event(), threading.Event()
    wait = waits_for(intake_done, "no event was recorded while the policy was being learned")
    learnings.before = lambda: learning.set() or wait()

    async def scenario() -> tuple[monitor_service_pb2.GetRoutingPolicyResponse, int]:
        learned = asyncio.create_task(service.GetRoutingPolicy(ask(), AbortingContext()))
        await asyncio.to_thread(learning.wait, 30)
        arrived = monitor_service_pb2.Event(request_id="r1", request=monitor_service_pb2.RequestEvent(task="digits"))
        recorded = await service.RecordEvents(events(arrived), AbortingContext())
        intake_done.set()
        return await learned, recorded.recorded

    reply, recorded = asyncio.run(scenario())
    assert recorded == 1 and reply.requests == 50


def test_a_learning_whose_caller_gave_up_finishes_into_the_memo(learnings: Learnings) -> None:
    service = monitor(scored=50)
    learning, released = threading.Event(), threading.Event()
    wait = waits_for(released, "the learning was never released")
    learnings.before = lambda: learning.set() or wait()

    async def scenario() -> monitor_service_pb2.GetRoutingPolicyResponse:
        impatient = asyncio.create_task(service.GetRoutingPolicy(ask(), AbortingContext()))
        await asyncio.to_thread(learning.wait, 30)
        impatient.cancel()  # as a router's deadline would
        released.set()
        return await service.GetRoutingPolicy(ask(), AbortingContext())

    assert asyncio.run(scenario()).requests == 50
    assert len(learnings.targets) == 1


def test_learnings_queued_past_their_bound_are_refused_at_once(learnings: Learnings) -> None:
    service = monitor(scored=50)
    learning, released = threading.Event(), threading.Event()
    wait = waits_for(released, "the learning was never released")
    learnings.before = lambda: learning.set() or wait()
    bound = monitor_service.MAX_LEARNINGS_IN_FLIGHT

    async def scenario() -> Refused:
        # One learning holds the worker; the bound's worth of other targets wait behind it.
        waiting = [asyncio.create_task(service.GetRoutingPolicy(ask(0.5 + n / 100), AbortingContext())) for n in range(bound)]
        await asyncio.to_thread(learning.wait, 30)
        try:
            await service.GetRoutingPolicy(ask(0.99), AbortingContext())
        except Refused as refused:
            return refused
        finally:
            released.set()
            await asyncio.gather(*waiting)
        raise AssertionError("a learning past the bound was queued")

    refused = asyncio.run(scenario())
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queued or running" in refused.details
    assert 0.99 not in learnings.targets


def step_event(name: str, tier: int, cost: float) -> monitor_service_pb2.Event:
    step = common_pb2.EscalationStep(
        model=common_pb2.ModelRef(name=name, version=1), tier=tier, answer=common_pb2.Answer(label="7", confidence=0.99), cost=cost
    )
    return monitor_service_pb2.Event(request_id="r", step=monitor_service_pb2.StepEvent(step=step))


def test_a_learned_policy_is_reused_until_feedback_changes_its_data(learnings: Learnings) -> None:
    service = monitor(scored=50)

    async def scenario() -> list[str]:
        versions = [(await service.GetRoutingPolicy(ask(0.9), AbortingContext())).version for _ in range(3)]
        # Feedback on one more request changes the data: the next call learns again.
        answered = monitor_service_pb2.Event(request_id="r", request=monitor_service_pb2.RequestEvent(task="digits"))
        batch = events(answered, step_event("cheap", 1, 1.0), step_event("strong", 2, 10.0))
        await service.RecordEvents(batch, AbortingContext())
        await service.RecordFeedback(monitor_service_pb2.RecordFeedbackRequest(request_id="r", label="7"), AbortingContext())
        versions.append((await service.GetRoutingPolicy(ask(0.9), AbortingContext())).version)
        return versions

    versions = asyncio.run(scenario())
    assert len(learnings.targets) == 2 and len(set(versions[:3])) == 1


def test_the_monitors_memo_of_learned_policies_is_bounded(learnings: Learnings, monkeypatch: pytest.MonkeyPatch) -> None:
    service = monitor(scored=50)
    monkeypatch.setattr(monitor_service, "MAX_LEARNED_POLICIES", 2)

    async def scenario() -> None:
        for target in (0.8, 0.85, 0.9, 0.9, 0.85, 0.8):
            await service.GetRoutingPolicy(ask(target), AbortingContext())

    asyncio.run(scenario())
    # 0.9 and 0.85 are remembered; 0.8, the least recently asked of three, was forgotten.
    assert learnings.targets == [0.8, 0.85, 0.9, 0.8]


# --- the router's memo of learned thresholds (services/router/service.py PolicyWatcher) ---------


class CountingMonitor:
    """Answers GetRoutingPolicy with one threshold and records the tasks asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def GetRoutingPolicy(self, request, timeout: float):  # type: ignore[no-untyped-def]  # noqa: N802
        self.asked.append(request.task)
        return monitor_service_pb2.GetRoutingPolicyResponse(
            version="v", tier_thresholds=[common_pb2.TierThresholds(tier=1, accept_threshold=0.9)]
        )


class OneTaskOrchestrator:
    """Lists one routable model, of task digits."""

    async def ListModels(self, request, timeout: float):  # type: ignore[no-untyped-def]  # noqa: N802
        model = common_pb2.ModelInfo(model=common_pb2.ModelRef(name="m", version=1), task="digits", ready=True)
        return orchestrator_service_pb2.ListModelsResponse(models=[model])


def watcher(monitor_stub: CountingMonitor) -> router_service.PolicyWatcher:
    catalog = router_service.ModelCatalog(OneTaskOrchestrator(), ttl_seconds=3600)  # type: ignore[arg-type]
    return router_service.PolicyWatcher(monitor_stub, catalog, refresh_seconds=3600)  # type: ignore[arg-type]


def test_the_router_asks_the_monitor_only_for_tasks_of_its_catalog() -> None:
    counting = CountingMonitor()
    policies = watcher(counting)

    async def scenario() -> list[object]:
        return [await policies.for_target(task, 0.9) for task in ("digits", "made-up-1", "made-up-2")]

    learned, *unknown = asyncio.run(scenario())
    assert learned is not None and unknown == [None, None]
    assert counting.asked == ["digits"]


def test_the_routers_memo_of_learned_thresholds_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Targets are kept to the hundredth, so one task has at most 101; a smaller bound shows it holds.
    monkeypatch.setattr(router_service, "MAX_TARGET_POLICIES", 50)
    counting = CountingMonitor()
    policies = watcher(counting)

    async def scenario() -> None:
        for index in range(60):
            await policies.for_target("digits", index / 100)
        await policies.for_target("digits", 0.591)  # the same hundredth as 0.59: remembered
        # The first target asked was forgotten, the latest is remembered.
        await policies.for_target("digits", 0.0)

    asyncio.run(scenario())
    assert len(counting.asked) == 61
    assert len(policies._targets) == 50  # noqa: SLF001 - the memo's size is the bound under test


# --- end to end, on the running suite ----------------------------------------------------------


@pytest.mark.integration
def test_a_hostile_shape_is_refused_at_once_and_the_router_still_answers(router, orchestrator) -> None:
    hostile = common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=HOSTILE_SHAPE)
    with pytest.raises(grpc.RpcError) as raised:
        router.Infer(router_service_pb2.InferRequest(task="digits", inputs=[hostile], skip_cache=True), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "inputs[0].shape has 50000 dimensions, more than the 16 allowed"
    # The orchestrator's own checks (its Execute and Embed) refuse it the same way.
    plan = common_pb2.Plan(
        strategy=common_pb2.STRATEGY_SINGLE, task="digits", steps=[common_pb2.PlanStep(model=common_pb2.ModelRef(name="digits_linear"))]
    )
    with pytest.raises(grpc.RpcError) as raised:
        orchestrator.Execute(orchestrator_service_pb2.ExecuteRequest(plan=plan, inputs=[hostile]), timeout=30)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs[0].shape has 50000 dimensions, more than the 16 allowed",
    )
    with pytest.raises(grpc.RpcError) as raised:
        orchestrator.Embed(orchestrator_service_pb2.EmbedRequest(model_name="text_embedding", input=hostile), timeout=30)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input.shape has 50000 dimensions, more than the 16 allowed",
    )
    answered = router.Infer(router_service_pb2.InferRequest(task="digits", inputs=[IMAGE], skip_cache=True), timeout=30)
    assert answered.answer.label


@pytest.mark.integration
def test_the_orchestrator_refuses_a_request_past_its_bounds_naming_the_field(orchestrator) -> None:
    step = common_pb2.PlanStep(model=common_pb2.ModelRef(name="digits_linear"), tier=1, accept_threshold=0.9)
    ensemble = common_pb2.Plan(strategy=common_pb2.STRATEGY_ENSEMBLE, task="digits", steps=[step] * 33)
    cascade = common_pb2.Plan(strategy=common_pb2.STRATEGY_CASCADE, task="digits", steps=[step])
    search = common_pb2.Plan(strategy=common_pb2.STRATEGY_SEARCH, task="digits", steps=[step], max_calls=65)
    cases = [
        (orchestrator_service_pb2.ExecuteRequest(plan=ensemble, inputs=[IMAGE]), "plan.steps holds 33 steps, more than the 32 allowed"),
        (orchestrator_service_pb2.ExecuteRequest(plan=cascade, inputs=[IMAGE] * 33), "inputs holds 33 tensors, more than the 32 allowed"),
        (
            orchestrator_service_pb2.ExecuteRequest(request_id="r" * 257, plan=cascade, inputs=[IMAGE]),
            "request_id has 257 characters, more than 256",
        ),
        (
            orchestrator_service_pb2.ExecuteRequest(plan=search, inputs=[IMAGE]),
            "plan.max_calls 65 of a STRATEGY_SEARCH plan is outside [1, 64]",
        ),
    ]
    for request, message in cases:
        with pytest.raises(grpc.RpcError) as raised:
            orchestrator.Execute(request, timeout=30)
        assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    # At the bound, the ensemble runs.
    ran = orchestrator.Execute(
        orchestrator_service_pb2.ExecuteRequest(plan=common_pb2.Plan(strategy=common_pb2.STRATEGY_ENSEMBLE, task="digits", steps=[step] * 32), inputs=[IMAGE]),
        timeout=30,
    )
    assert len(ran.steps) == 32
