"""The router's RPC handler: validation, cache check, planning, execution, cache store and events."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Protocol

import grpc
from opentelemetry import trace

from inferscale import telemetry
from inferscale.auth import current_caller
from inferscale.cache_client import CacheClient
from inferscale.errors import InferScaleError, Unavailable, grpc_errors, grpc_stream_errors
from inferscale.events import EventSender
from inferscale.steps import ANSWERED
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    common_pb2,
    monitor_service_pb2,
    monitor_service_pb2_grpc,
    orchestrator_service_pb2,
    router_service_pb2,
    router_service_pb2_grpc,
)
from services.router.planning import (
    DEFAULT_SEARCH_CALLS,
    DEFAULT_SKIP_COMPLEXITY,
    MAX_REQUEST_ID_CHARS,
    MAX_TASK_CHARS,
    answers_whole_plan,
    build_plan,
    produced_by_current_versions,
    result_key,
    validate_request,
)
from services.router.policy import PublishedPolicy, TargetPolicy, with_policy
from services.router.semantic import embedding_source, semantic_namespace
from services.router.text_task import (
    DEFAULT_TEXT_SETTINGS,
    TextDefaults,
    answer_is_sampled,
    resolved_text,
)

LOG = logging.getLogger(__name__)
L1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
# The steps whose model versions made an answer: those that answered, and the complexity
# analysis, whose score chose which of them ran.
MADE_THE_ANSWER = ANSWERED | {common_pb2.DECISION_ANALYZED}


class ExecuteStreamCall(Protocol):
    """A streamed Execute as grpc.aio's call object is used: iterated for its events; ``cancel``
    ends it early, cancelling the orchestrator's work (a generation on Triton)."""

    def __aiter__(self) -> AsyncIterator[orchestrator_service_pb2.ExecuteStreamResponse]: ...

    def cancel(self) -> bool: ...


class OrchestratorClient(Protocol):
    """The orchestrator calls the router makes: the orchestrator's gRPC stub, or
    ``services.router.embedded.InProcessOrchestrator`` when it runs in the router's process."""

    def Execute(
        self, request: orchestrator_service_pb2.ExecuteRequest, timeout: float | None = None
    ) -> Awaitable[orchestrator_service_pb2.ExecuteResponse]: ...

    def ExecuteStream(
        self, request: orchestrator_service_pb2.ExecuteStreamRequest, timeout: float | None = None
    ) -> ExecuteStreamCall: ...

    def Embed(
        self, request: orchestrator_service_pb2.EmbedRequest, timeout: float | None = None
    ) -> Awaitable[orchestrator_service_pb2.EmbedResponse]: ...

    def ListModels(
        self, request: orchestrator_service_pb2.ListModelsRequest, timeout: float | None = None
    ) -> Awaitable[orchestrator_service_pb2.ListModelsResponse]: ...


class ModelCatalog:
    """The orchestrator's model list, reused for ``ttl_seconds`` so that planning costs no extra call."""

    def __init__(self, orchestrator: OrchestratorClient, ttl_seconds: float) -> None:
        self._orchestrator = orchestrator
        self._ttl = ttl_seconds
        self._models: list[common_pb2.ModelInfo] = []
        self._fetched_at = float("-inf")
        # One refresh at a time: when the list expires under load, the requests in flight wait
        # for the one ListModels call instead of each making their own.
        self._refreshing = asyncio.Lock()

    def _expired(self) -> bool:
        return time.monotonic() - self._fetched_at > self._ttl

    async def routable(self, task: str) -> list[common_pb2.ModelInfo]:
        """Returns the routable models of ``task``."""
        if self._expired():
            async with self._refreshing:
                if self._expired():
                    reply = await self._orchestrator.ListModels(orchestrator_service_pb2.ListModelsRequest(), timeout=5.0)
                    self._models = list(reply.models)
                    self._fetched_at = time.monotonic()
        return [m for m in self._models if m.task == task and m.ready and not m.problem]

    async def tasks(self) -> set[str]:
        """The tasks of the routable models."""
        await self.routable("")
        return {m.task for m in self._models if m.task and m.ready and not m.problem}

    async def ready(self, name: str) -> common_pb2.ModelInfo | None:
        """Returns the model ``name``, a task's or a role's (a complexity model), when it is ready and has no problem."""
        await self.routable("")
        return next((m for m in self._models if m.model.name == name and m.ready and not m.problem), None)


# Semantic-hit audits running at once (INFERSCALE_SEMANTIC_AUDIT_RATE).
MAX_AUDITS_IN_FLIGHT = 16

# The (task, accuracy target) pairs whose learned thresholds a router remembers; the least recently
# asked go first.
MAX_TARGET_POLICIES = 1024


class PolicyWatcher:
    """Keeps each task's published routing policy, read from the monitor every ``refresh_seconds``.

    A monitor that is down leaves the last policy read in force: routing never waits on it.
    """

    def __init__(
        self, monitor: monitor_service_pb2_grpc.MonitorServiceStub | None, catalog: ModelCatalog, refresh_seconds: float
    ) -> None:
        self._monitor = monitor
        self._catalog = catalog
        self._refresh = refresh_seconds
        self._policies: dict[str, PublishedPolicy] = {}
        # (task, target) -> (when it expires, the learned thresholds or None while none can be learned)
        self._targets: OrderedDict[tuple[str, float], tuple[float, TargetPolicy | None]] = OrderedDict()

    def current(self, task: str) -> PublishedPolicy | None:
        """The task's published policy as last read, if any."""
        return self._policies.get(task)

    async def for_target(self, task: str, target: float) -> TargetPolicy | None:
        """The thresholds the monitor learns for ``task`` at accuracy ``target``, cached for a refresh
        interval; None while it has no feedback to learn them from, or cannot be reached, and for a
        task the catalog does not route."""
        # Targets a hundredth apart share one learning: a client cannot make the monitor learn
        # thousands of policies by varying the target.
        key = (task, round(target, 2))
        cached = self._targets.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._targets.move_to_end(key)
            return cached[1]
        if not await self._catalog.routable(task):
            # A task name a client made up costs the monitor no learning and this memo no entry.
            return None
        learned = None
        if self._monitor is not None:
            try:
                reply = await self._monitor.GetRoutingPolicy(
                    monitor_service_pb2.GetRoutingPolicyRequest(task=task, target_accuracy=key[1]), timeout=2.0
                )
                thresholds = {t.tier: t.accept_threshold for t in reply.tier_thresholds}
                learned = TargetPolicy(task, key[1], reply.version, thresholds)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    LOG.warning("no thresholds for %s at target %g: %s", task, target, error.code().name)
        self._targets[key] = (time.monotonic() + self._refresh, learned)
        self._targets.move_to_end(key)
        if len(self._targets) > MAX_TARGET_POLICIES:
            self._targets.popitem(last=False)
        return learned

    async def refresh(self) -> None:
        """Reads every task's published policy once."""
        assert self._monitor is not None
        for task in sorted(await self._catalog.tasks()):
            reply = await self._monitor.GetPublishedRoutingPolicy(
                monitor_service_pb2.GetPublishedRoutingPolicyRequest(task=task), timeout=2.0
            )
            policy = PublishedPolicy.from_proto(reply.published)
            previous = self._policies.get(task)
            if policy is None:
                self._policies.pop(task, None)
            else:
                self._policies[task] = policy
            if policy != previous:
                LOG.info("routing policy of %s is now %s", task, policy.label if policy else "the defaults")

    async def run(self) -> None:
        """Refreshes until cancelled."""
        while self._monitor is not None:
            try:
                await self.refresh()
            except grpc.aio.AioRpcError as error:
                LOG.warning("routing policies not refreshed, keeping the last ones: %s", error.code().name)
            await asyncio.sleep(self._refresh)


def execute_request(
    request_id: str,
    plan: common_pb2.Plan,
    inputs: Sequence[common_pb2.InferTensor],
    text: common_pb2.TextPrompt | None,
    *,
    skip_cache: bool = False,
) -> orchestrator_service_pb2.ExecuteRequest:
    """The orchestrator's request to run ``plan`` on ``inputs``, or on ``text`` for a text task (inputs then empty)."""
    request = orchestrator_service_pb2.ExecuteRequest(request_id=request_id, plan=plan, inputs=inputs, skip_cache=skip_cache)
    if text is not None:
        request.text.CopyFrom(text)
    return request


def rerun(
    work: orchestrator_service_pb2.ExecuteRequest, request_id: str, plan: common_pb2.Plan
) -> orchestrator_service_pb2.ExecuteRequest:
    """What ``work`` reads, run by ``plan`` under an id of its own (a verification's, an audit's),
    so that the monitor does not score it as part of the request."""
    return execute_request(request_id, plan, work.inputs, work.text if work.HasField("text") else None)


def relayed(event: orchestrator_service_pb2.ExecuteStreamResponse) -> router_service_pb2.InferStreamResponse:
    """The client's copy of one of the orchestrator's events (the two streams name their events alike)."""
    kind = event.WhichOneof("event")
    relay = router_service_pb2.InferStreamResponse()
    getattr(relay, kind).CopyFrom(getattr(event, kind))
    return relay


class RouterService(router_service_pb2_grpc.RouterServiceServicer):
    """InferScale's front door."""

    def __init__(
        self,
        orchestrator: OrchestratorClient,
        cache: cache_service_pb2_grpc.CacheServiceStub | None,
        events: EventSender,
        catalog: ModelCatalog,
        policies: PolicyWatcher,
        *,
        default_threshold: float,
        default_escalate_threshold: float,
        cache_timeout_seconds: float,
        request_timeout_seconds: float,
        semantic_verify: bool = False,
        semantic_audit_rate: float = 0.0,
        exploration_rate: float = 0.0,
        search_max_calls: int = DEFAULT_SEARCH_CALLS,
        skip_complexity: float = DEFAULT_SKIP_COMPLEXITY,
        finite_inputs: bool = True,
        text_defaults: TextDefaults = DEFAULT_TEXT_SETTINGS,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self._orchestrator = orchestrator
        self._cache = CacheClient(cache, timeout_seconds=cache_timeout_seconds) if cache is not None else None
        self._events = events
        self._catalog = catalog
        self._default_threshold = default_threshold
        self._default_escalate_threshold = default_escalate_threshold
        self._request_timeout = request_timeout_seconds
        self._semantic_verify = semantic_verify
        self._semantic_audit_rate = semantic_audit_rate
        self._exploration_rate = exploration_rate
        self._search_max_calls = search_max_calls
        self._skip_complexity = skip_complexity
        self._finite_inputs = finite_inputs
        self._text = text_defaults
        self._policies = policies
        self._sample = sample
        self._audits: set[asyncio.Task[None]] = set()

    @grpc_errors
    async def Infer(
        self, request: router_service_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> router_service_pb2.InferResponse:
        response = self._response_to(request)
        async for _ in self._reported(request, response, self._answer(request, response, context, streamed=False)):
            pass  # unstreamed: the orchestrator's events are not asked for
        return response

    @grpc_stream_errors
    async def InferStream(
        self, request: router_service_pb2.InferStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[router_service_pb2.InferStreamResponse, None]:
        response = self._response_to(request.request)
        answering = self._answer(request.request, response, context, streamed=True)
        # Closed at once when the client goes away, so that the orchestrator's call is cancelled then.
        async with aclosing(self._reported(request.request, response, answering)) as events:
            async for event in events:
                yield relayed(event)
        yield router_service_pb2.InferStreamResponse(response=response)

    @staticmethod
    def _response_to(request: router_service_pb2.InferRequest) -> router_service_pb2.InferResponse:
        """The response to build: the request's id (or one of ours) and the trace's."""
        # An id past its bound is refused with the request (validate_request); its event and reply
        # carry one of ours, which the monitor accepts, rather than the caller's.
        request_id = request.request_id if 0 < len(request.request_id) <= MAX_REQUEST_ID_CHARS else uuid.uuid4().hex
        trace.get_current_span().set_attribute(telemetry.ATTR_REQUEST_ID, request_id)
        return router_service_pb2.InferResponse(request_id=request_id, trace_id=telemetry.current_trace_id())

    async def _reported(
        self,
        request: router_service_pb2.InferRequest,
        response: router_service_pb2.InferResponse,
        answering: AsyncGenerator[orchestrator_service_pb2.ExecuteStreamResponse, None],
    ) -> AsyncGenerator[orchestrator_service_pb2.ExecuteStreamResponse, None]:
        """Passes on the events of ``answering`` (``_answer`` at work on ``request``), then tells the
        monitor how the request went, whatever the outcome, from what ``response`` holds by then."""
        started = time.perf_counter()
        status = grpc.StatusCode.UNKNOWN
        try:
            async with aclosing(answering) as events:
                async for event in events:
                    yield event
            status = grpc.StatusCode.OK
        except InferScaleError as error:
            status = error.code
            raise
        except grpc.aio.AioRpcError as error:
            status = error.code()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The client cancelled (a stream it stopped reading ends at its last event), or its
            # deadline ended the call: not a fault of ours.
            status = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._events.emit(
                monitor_service_pb2.Event(
                    request_id=response.request_id,
                    request=monitor_service_pb2.RequestEvent(
                        # A task past its bound is refused with the request; its event names none.
                        task=request.task if len(request.task) <= MAX_TASK_CHARS else "",
                        strategy=response.plan.strategy,
                        cache_level=response.cache_level,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        total_cost=response.total_cost,
                        status_code=status.value[0],
                        answer=response.answer,
                    ),
                )
            )

    async def _answer(
        self,
        request: router_service_pb2.InferRequest,
        response: router_service_pb2.InferResponse,
        context: grpc.aio.ServicerContext,
        *,
        streamed: bool,
    ) -> AsyncGenerator[orchestrator_service_pb2.ExecuteStreamResponse, None]:
        """Validation, planning, the caches and the plan's run; ``streamed``, the run's events as they come."""
        request_id = response.request_id
        validate_request(request, finite_inputs=self._finite_inputs)
        models = await self._catalog.routable(request.task)
        explore = bool(self._exploration_rate) and self._sample() < self._exploration_rate
        target = await self._policies.for_target(request.task, request.target_accuracy) if request.target_accuracy else None
        planned, response.policy_version = with_policy(request, self._policies.current(request.task), explore, target)
        plan = build_plan(
            planned,
            models,
            self._default_threshold,
            self._default_escalate_threshold,
            default_max_calls=self._search_max_calls,
            skip_complexity=self._skip_complexity,
            verifier_model=self._text.verifier_model,
        )
        response.plan.CopyFrom(plan)
        span = trace.get_current_span()
        span.set_attributes(
            {
                telemetry.ATTR_TASK: plan.task,
                telemetry.ATTR_STRATEGY: common_pb2.Strategy.Name(plan.strategy),
                telemetry.ATTR_POLICY_VERSION: response.policy_version,
            }
        )
        text = resolved_text(request.text, plan.strategy, self._text) if request.HasField("text") else None
        # The models the plan names without a version, whose current versions decide with the steps.
        judges = []
        for name in (plan.complexity_model, plan.verifier_model):
            judge = await self._catalog.ready(name) if name else None
            if judge is not None:
                judges.append(judge)
        key = result_key(plan, request.inputs, [judge.model for judge in judges], text)
        # The model versions a stored answer may have been made with, as the registry has them now.
        current = [*models, *judges]
        # A cached sample must never stand in for the fresh one the request asks for.
        sampled = text is not None and answer_is_sampled(plan, text, models)
        use_cache = self._cache is not None and not request.skip_cache and not sampled
        if use_cache:
            cached = await self._lookup(key, request_id, current)
            if cached is not None:
                executed, entry = cached
                self._fill(response, executed)
                response.cache_level = L4
                response.total_cost = 0.0
                response.computed_cost = entry.compute_cost
                span.set_attribute(telemetry.ATTR_CACHE_LEVEL, common_pb2.CacheLevel.Name(L4))
                return
        work = execute_request(request_id, plan, request.inputs, text, skip_cache=request.skip_cache)
        # Embedding the request for L1 is compute the request spends, whatever serves it.
        semantic, embed_cost = await self._semantic_query(request, plan, text, models, context) if use_cache else (None, 0.0)
        if semantic is not None:
            served = await self._semantic_lookup(semantic, work, current, context)
            if served is not None:
                executed, reply, verify_cost = served
                self._fill(response, executed)
                response.cache_level = L1
                response.semantic_similarity = reply.similarity
                response.total_cost = embed_cost + verify_cost
                response.computed_cost = reply.entry.compute_cost
                span.set_attributes(
                    {
                        telemetry.ATTR_CACHE_LEVEL: common_pb2.CacheLevel.Name(L1),
                        telemetry.ATTR_SEMANTIC_SIMILARITY: reply.similarity,
                    }
                )
                return
        if streamed:
            async with aclosing(self._execute_streamed(work, context)) as events:
                async for event in events:
                    if event.HasField("response"):
                        executed = event.response
                    else:
                        yield event
        else:
            executed = await self._execute(work, context)
        self._fill(response, executed)
        response.total_cost = embed_cost + executed.total_cost
        response.computed_cost = executed.total_cost
        # Only the whole plan's answer is kept under its key (see answers_whole_plan): a partial
        # one, or one short of a model that had left routing, is not what the plan gives.
        if use_cache and answers_whole_plan(executed.steps):
            # In the background: the reply does not wait on the cache.
            self._store(key, executed)
            if semantic is not None:
                self._semantic_store(semantic, executed)

    async def _execute(
        self, work: orchestrator_service_pb2.ExecuteRequest, context: grpc.aio.ServicerContext | None
    ) -> orchestrator_service_pb2.ExecuteResponse:
        return await self._orchestrator.Execute(work, timeout=self._timeout(context))

    async def _execute_streamed(
        self, work: orchestrator_service_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[orchestrator_service_pb2.ExecuteStreamResponse, None]:
        """The orchestrator's events for ``work`` as they come, the last one its response."""
        call = self._orchestrator.ExecuteStream(
            orchestrator_service_pb2.ExecuteStreamRequest(request=work), timeout=self._timeout(context)
        )
        responded = False
        try:
            async for event in call:
                responded = event.HasField("response")
                yield event
        except BaseException:
            # Left early (the client cancelled or went away, or the call failed): the orchestrator's
            # work, a generation on Triton, must not go on for no one.
            call.cancel()
            raise
        if not responded:
            raise Unavailable("the orchestrator ended its stream without a response")

    def _timeout(self, context: grpc.aio.ServicerContext | None) -> float:
        """What is left of the caller's deadline, or the configured request timeout when it set none."""
        remaining = context.time_remaining() if context is not None else None
        return remaining if remaining is not None else self._request_timeout

    async def _semantic_query(
        self,
        request: router_service_pb2.InferRequest,
        plan: common_pb2.Plan,
        text: common_pb2.TextPrompt | None,
        models: list[common_pb2.ModelInfo],
        context: grpc.aio.ServicerContext,
    ) -> tuple[cache_service_pb2.SemanticLookupRequest | None, float]:
        """Returns the request's L1 lookup (None when its task has none or its embedding cannot be had) and what embedding cost."""
        source = embedding_source(request, models)
        if source is None:
            return None, 0.0
        caller = current_caller()
        if source.from_caller and not caller:
            # Without client authentication there is no caller to confine the embedding to, and a
            # shared namespace would let anyone choose what others are served.
            return None, 0.0
        vector = source.vector
        cost = 0.0
        if vector is None:
            try:
                embedded = await self._orchestrator.Embed(
                    orchestrator_service_pb2.EmbedRequest(model_name=source.embedding_model, input=source.tensor),
                    timeout=self._timeout(context),
                )
            except grpc.aio.AioRpcError as error:
                LOG.warning("embedding with %s failed, skipping the semantic cache: %s", source.embedding_model, error.code().name)
                return None, 0.0
            embedding = list(embedded.embedding)
            cost = embedded.cost
        else:
            embedding = vector.tolist()
        query = cache_service_pb2.SemanticLookupRequest(
            namespace=semantic_namespace(plan, len(embedding), caller if source.from_caller else "", text),
            embedding=embedding,
            similarity_threshold=source.threshold,
        )
        return query, cost

    async def _semantic_lookup(
        self,
        query: cache_service_pb2.SemanticLookupRequest,
        work: orchestrator_service_pb2.ExecuteRequest,
        models: list[common_pb2.ModelInfo],
        context: grpc.aio.ServicerContext,
    ) -> tuple[orchestrator_service_pb2.ExecuteResponse, cache_service_pb2.SemanticLookupResponse, float] | None:
        """Returns a neighbour's result, its lookup and what verifying it cost; None on a miss, a rejection or a failure."""
        assert self._cache is not None
        reply = await self._cache.semantic_lookup(query)
        if reply is None:
            return None
        executed = self._servable(reply, models, f"semantic cache entry in {query.namespace}")
        verify_cost = 0.0
        if executed is not None and self._semantic_verify:
            verified, verify_cost = await self._verify(executed, work, context)
            if not verified:
                trace.get_current_span().set_attribute(telemetry.ATTR_SEMANTIC_REJECTED, True)
                executed = None
        self._events.emit(
            monitor_service_pb2.Event(
                request_id=work.request_id, cache=monitor_service_pb2.CacheEvent(level=L1, hit=executed is not None)
            )
        )
        if executed is None:
            return None
        # Audits run the whole plan outside the calls the router serves at once: past a bound, a
        # sampled hit goes unaudited rather than pile up work no client waits for.
        auditing = len(self._audits) < MAX_AUDITS_IN_FLIGHT
        if auditing and self._semantic_audit_rate and self._sample() < self._semantic_audit_rate:
            task = asyncio.create_task(self._audit(executed.answer.label, work))
            self._audits.add(task)
            task.add_done_callback(self._audits.discard)
        return executed, reply, verify_cost

    async def _verify(
        self,
        neighbour: orchestrator_service_pb2.ExecuteResponse,
        work: orchestrator_service_pb2.ExecuteRequest,
        context: grpc.aio.ServicerContext,
    ) -> tuple[bool, float]:
        """Runs the plan's cheapest step on this request; the neighbour's answer stands only if that step agrees."""
        cheapest = common_pb2.Plan(strategy=common_pb2.STRATEGY_SINGLE, task=work.plan.task, steps=[work.plan.steps[0]])
        try:
            checked = await self._execute(rerun(work, f"{work.request_id}:verify", cheapest), context)
        except grpc.aio.AioRpcError as error:
            LOG.warning("semantic verification failed, not serving the neighbour: %s", error.code().name)
            return False, 0.0
        return checked.answer.label == neighbour.answer.label, checked.total_cost

    async def _audit(self, served_label: str, work: orchestrator_service_pb2.ExecuteRequest) -> None:
        """Runs the plan for a served semantic hit, off the request's path, and reports whether the answers differ."""
        try:
            executed = await self._execute(rerun(work, f"{work.request_id}:audit", work.plan), None)
        except grpc.aio.AioRpcError as error:
            LOG.warning("semantic cache audit of %s failed: %s", work.request_id, error.code().name)
            return
        self._events.emit(
            monitor_service_pb2.Event(
                request_id=work.request_id,
                cache=monitor_service_pb2.CacheEvent(
                    level=L1, hit=True, audited=True, false_hit=executed.answer.label != served_label
                ),
            )
        )

    def _semantic_store(
        self, query: cache_service_pb2.SemanticLookupRequest, executed: orchestrator_service_pb2.ExecuteResponse
    ) -> None:
        assert self._cache is not None
        self._cache.semantic_store(
            cache_service_pb2.SemanticStoreRequest(namespace=query.namespace, embedding=query.embedding, entry=self._entry(executed))
        )

    @staticmethod
    def _fill(response: router_service_pb2.InferResponse, executed: orchestrator_service_pb2.ExecuteResponse) -> None:
        response.outputs.extend(executed.outputs)
        response.answer.CopyFrom(executed.answer)
        response.alternatives.extend(executed.alternatives)
        response.steps.extend(executed.steps)
        if executed.HasField("uncertainty"):
            response.uncertainty.CopyFrom(executed.uncertainty)

    async def _lookup(
        self, key: str, request_id: str, models: list[common_pb2.ModelInfo]
    ) -> tuple[orchestrator_service_pb2.ExecuteResponse, cache_service_pb2.CacheEntry] | None:
        """Returns the stored result, or None on a miss or when the cache fails: a cache never fails a request."""
        assert self._cache is not None
        reply = await self._cache.lookup(cache_service_pb2.LookupRequest(level=L4, key=key))
        if reply is None:
            return None
        executed = self._servable(reply, models, f"cache entry {key}")
        # Counted once its entry is known to serve: a stale or corrupt entry is the miss it ends as.
        self._events.emit(
            monitor_service_pb2.Event(
                request_id=request_id, cache=monitor_service_pb2.CacheEvent(level=L4, hit=executed is not None)
            )
        )
        return (executed, reply.entry) if executed is not None else None

    @staticmethod
    def _servable(
        reply: cache_service_pb2.LookupResponse | cache_service_pb2.SemanticLookupResponse,
        models: Sequence[common_pb2.ModelInfo],
        what: str,
    ) -> orchestrator_service_pb2.ExecuteResponse | None:
        """Returns the result a lookup found, or None when it found none, one made by a model version
        that is no longer current, or one that does not parse: a cache never fails a request."""
        if not reply.hit:
            return None
        if not produced_by_current_versions(reply.entry.produced_by, models):
            LOG.info("%s was made by a model version that is no longer current; recomputing", what)
            return None
        executed = orchestrator_service_pb2.ExecuteResponse()
        try:
            executed.ParseFromString(reply.entry.value)
        except Exception:  # noqa: BLE001 - a corrupt entry is a miss, never a failed request
            LOG.warning("%s does not parse; treating it as a miss", what)
            return None
        return executed

    @staticmethod
    def _entry(executed: orchestrator_service_pb2.ExecuteResponse) -> cache_service_pb2.CacheEntry:
        return cache_service_pb2.CacheEntry(
            value=executed.SerializeToString(),
            produced_by=[step.model for step in executed.steps if step.decision in MADE_THE_ANSWER],
            compute_cost=executed.total_cost,
        )

    def _store(self, key: str, executed: orchestrator_service_pb2.ExecuteResponse) -> None:
        assert self._cache is not None
        self._cache.store(cache_service_pb2.StoreRequest(level=L4, key=key, entry=self._entry(executed)))

    async def close(self) -> None:
        """Stops the audits under way and waits a moment for the cache stores still in flight (see CacheClient.close)."""
        for audit in list(self._audits):
            audit.cancel()
        await asyncio.gather(*self._audits, return_exceptions=True)
        if self._cache is not None:
            await self._cache.close()
