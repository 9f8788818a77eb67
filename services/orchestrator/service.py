"""The orchestrator's RPC handlers: protos in, plan execution on Triton, protos out."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Iterable, Sequence

import grpc
import numpy as np
from opentelemetry import trace

from inferscale import telemetry
from inferscale.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InferScaleError,
    InvalidArgument,
    ModelFailed,
    NotFound,
    Unavailable,
    grpc_errors,
)
from inferscale.events import EventSender
from inferscale.limits import MAX_INPUT_TENSORS, MAX_PLAN_STEPS, MAX_SEARCH_CALLS
from inferscale.steps import ANSWERED
from inferscale.tensors import bytes_elements, from_numpy, to_numpy, validate_tensor
from inferscale.triton.client import InferResult
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)
from services.orchestrator.aggregation import (
    Offered,
    alternatives_to,
    best_score,
    mean_probability,
    plurality,
    vote_entropy,
    weighted_vote,
)
from services.orchestrator.escalation import (
    LEFT_ROUTING,
    NextTier,
    ReadAnswer,
    choose_expert,
    decide,
    read_class_probabilities,
    read_grids,
    stop_before,
)
from services.orchestrator.latency import RecentSteps
from services.orchestrator.model_cache import L2, L3, ModelOutputCache, model_output_key
from services.orchestrator.registry import GRID, ROLE_COMPLEXITY, ROLE_EMBEDDING, RegisteredModel
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.search import REFINE, SAMPLE, AdaptiveSearch, SearchMember
from services.orchestrator.triton_pool import TritonPool

TRACER = trace.get_tracer("inferscale.orchestrator")
# The longest request id: the router's 128 characters and the suffix of a verification or an audit.
MAX_REQUEST_ID_CHARS = 256


def _model_info(model: RegisteredModel) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name=model.name, version=model.version),
        task=model.task,
        tier=model.tier,
        cost=model.cost,
        answer_kind=model.answer_kind,
        confidence_method=model.confidence_method,
        output_name=model.output_name,
        refinement_input=model.refinement_input,
        sampling_input=model.sampling_input,
        complexity_model=model.complexity_model,
        expert_low=model.expert_low,
        expert_high=model.expert_high,
        semantic_input=model.semantic_input,
        embedding_model=model.embedding_model,
        semantic_threshold=model.semantic_threshold,
        ready=model.ready,
        problem=model.problem,
    )


# How a plan ranks the alternatives of grid answers, as it ranked its answer: by the plan's
# aggregation when it has one (an ensemble, a search over grids), else a search by its
# score-weighted vote and a cascade or one model by best score.
RANKING_OF_STRATEGY = {common_pb2.STRATEGY_SEARCH: "score_vote"}
RANKING_OF_AGGREGATION = {
    common_pb2.AGGREGATION_PLURALITY: "plurality",
    common_pb2.AGGREGATION_WEIGHTED_VOTE: "weighted_vote",
    common_pb2.AGGREGATION_BEST_SCORE: "best_score",
}


def offering(label: str, steps: Sequence[common_pb2.EscalationStep]) -> int:
    """The position among ``steps`` of the one whose outputs carry ``label``: the most confident
    step that answered it, else the first that offered it among its alternatives."""
    own = [i for i, step in enumerate(steps) if step.answer.label == label]
    if own:
        return max(own, key=lambda i: steps[i].answer.confidence)
    return next(i for i, step in enumerate(steps) if any(a.label == label for a in step.alternatives))


def offered(plan: common_pb2.Plan, steps: Iterable[common_pb2.EscalationStep]) -> list[Offered]:
    """Every candidate the steps that answered offered, in the steps' order, weighted by their plan step."""
    found = []
    for member, step in enumerate(s for s in steps if s.decision in ANSWERED):
        weight = (plan.steps[step.index].weight if 0 <= step.index < len(plan.steps) else 0.0) or 1.0
        for rank, answer in enumerate([step.answer, *step.alternatives]):
            found.append(Offered(answer.label, answer.confidence, weight, member, rank))
    return found


class OrchestratorService(orchestrator_service_pb2_grpc.OrchestratorServiceServicer):
    """Runs plans step by step on Triton and serves the registry."""

    def __init__(
        self,
        registry: TritonRegistry,
        triton: TritonPool,
        events: EventSender,
        model_cache: ModelOutputCache,
        *,
        default_timeout_seconds: float,
        min_gain_per_cost: float = 0.01,
    ) -> None:
        self._recent = RecentSteps()
        self._min_gain_per_cost = min_gain_per_cost
        self._registry = registry
        self._triton = triton
        self._events = events
        self._default_timeout = default_timeout_seconds
        self._model_cache = model_cache

    @grpc_errors
    async def ListModels(
        self, request: orchestrator_service_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.ListModelsResponse:
        models = [
            _model_info(m)
            for m in self._registry.snapshot.ordered()
            if not request.task or m.task == request.task
        ]
        return orchestrator_service_pb2.ListModelsResponse(models=models)

    @grpc_errors
    async def Embed(
        self, request: orchestrator_service_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.EmbedResponse:
        model = self._registry.snapshot.get(request.model_name)
        if model is None or not model.serves_as(ROLE_EMBEDDING):
            why = "is not in the registry" if model is None else (model.problem or "is not a ready embedding model")
            raise NotFound(f"model_name {request.model_name!r} {why}")
        validate_tensor(request.input, "input")
        inputs = [request.input]
        ref = common_pb2.ModelRef(name=model.name, version=model.version)
        key = model_output_key(L2, model.name, model.version, inputs)
        with TRACER.start_as_current_span(
            "inferscale.embed", attributes={telemetry.ATTR_MODEL: model.name, telemetry.ATTR_MODEL_VERSION: model.version}
        ) as span:
            served_by = common_pb2.CACHE_LEVEL_UNSPECIFIED
            cached = None
            if self._model_cache.worth_caching(model.cost, L2):
                cached = await self._model_cache.lookup(L2, key, "", ref)
            if cached is not None:
                outputs, version, served_by = list(cached.outputs), cached.model.version, L2
            else:
                result = await self._triton.infer(model.name, 0, inputs, timeout_seconds=self._timeout(context))
                outputs, version = result.outputs, result.model_version
                if version == model.version and self._model_cache.worth_caching(model.cost, L2):
                    self._model_cache.store(
                        L2, key, orchestrator_service_pb2.CachedModelOutput(model=ref, outputs=outputs), model.cost
                    )
            span.set_attribute(telemetry.ATTR_CACHE_LEVEL, common_pb2.CacheLevel.Name(served_by))
        output = next((t for t in outputs if t.name == model.output_name), None)
        if output is None or output.datatype != "FP32":
            raise ModelFailed(f"embedding model {model.name} returned no FP32 output named {model.output_name!r}")
        return orchestrator_service_pb2.EmbedResponse(
            embedding=to_numpy(output).reshape(-1).tolist(),
            model=common_pb2.ModelRef(name=model.name, version=version),
            cache_level=served_by,
            cost=0.0 if served_by else model.cost,
        )

    def _validate(self, request: orchestrator_service_pb2.ExecuteRequest) -> list[RegisteredModel | None]:
        """Checks the request; returns each step's model, or None for a step whose model left routing."""
        plan = request.plan
        # Counts and lengths first, read without reading what they count: they bound every check after them.
        if len(request.request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request_id has {len(request.request_id)} characters, more than {MAX_REQUEST_ID_CHARS}")
        if len(plan.steps) > MAX_PLAN_STEPS:
            raise InvalidArgument(f"plan.steps holds {len(plan.steps)} steps, more than the {MAX_PLAN_STEPS} allowed")
        if len(request.inputs) > MAX_INPUT_TENSORS:
            raise InvalidArgument(f"inputs holds {len(request.inputs)} tensors, more than the {MAX_INPUT_TENSORS} allowed")
        if not plan.steps:
            raise InvalidArgument("plan.steps must hold at least one step")
        if plan.strategy == common_pb2.STRATEGY_SINGLE and len(plan.steps) != 1:
            raise InvalidArgument(f"plan.steps of a STRATEGY_SINGLE plan must hold one step, not {len(plan.steps)}")
        if plan.strategy not in (
            common_pb2.STRATEGY_CASCADE,
            common_pb2.STRATEGY_SINGLE,
            common_pb2.STRATEGY_ENSEMBLE,
            common_pb2.STRATEGY_REFINEMENT,
            common_pb2.STRATEGY_SEARCH,
            common_pb2.STRATEGY_EXPERT,
        ):
            raise InvalidArgument(f"plan.strategy {plan.strategy} is not a strategy the orchestrator runs")
        if plan.strategy == common_pb2.STRATEGY_SEARCH and not 1 <= plan.max_calls <= MAX_SEARCH_CALLS:
            raise InvalidArgument(f"plan.max_calls {plan.max_calls} of a STRATEGY_SEARCH plan is outside [1, {MAX_SEARCH_CALLS}]")
        if plan.strategy != common_pb2.STRATEGY_SEARCH and plan.max_calls:
            raise InvalidArgument("plan.max_calls may be set only with strategy STRATEGY_SEARCH")
        if plan.strategy == common_pb2.STRATEGY_EXPERT and not plan.complexity_model:
            raise InvalidArgument("plan.complexity_model is required with strategy STRATEGY_EXPERT")
        if not 0.0 <= plan.skip_complexity <= 1.0:
            raise InvalidArgument(f"plan.skip_complexity {plan.skip_complexity} is outside [0, 1]")
        if plan.aggregation not in common_pb2.Aggregation.values():
            raise InvalidArgument(f"plan.aggregation {plan.aggregation} is not a known Aggregation value")
        if not (plan.cost_ceiling >= 0 and math.isfinite(plan.cost_ceiling)):
            raise InvalidArgument(f"plan.cost_ceiling {plan.cost_ceiling} must be a finite number >= 0")
        if not 0.0 <= plan.complexity <= 1.0:
            raise InvalidArgument(f"plan.complexity {plan.complexity} is outside [0, 1]")
        if not request.inputs:
            raise InvalidArgument("inputs must hold at least one tensor")
        for index, tensor in enumerate(request.inputs):
            validate_tensor(tensor, f"inputs[{index}]")
        models: list[RegisteredModel | None] = []
        problems = []
        for index, step in enumerate(plan.steps):
            if not 0.0 <= step.accept_threshold <= 1.0:
                raise InvalidArgument(f"plan.steps[{index}].accept_threshold {step.accept_threshold} is outside [0, 1]")
            if not 0.0 <= step.escalate_threshold <= step.accept_threshold:
                raise InvalidArgument(
                    f"plan.steps[{index}].escalate_threshold {step.escalate_threshold} is outside [0, accept_threshold]"
                )
            if not (step.weight >= 0 and math.isfinite(step.weight)):
                raise InvalidArgument(f"plan.steps[{index}].weight {step.weight} must be a finite number >= 0")
            model = self._registry.snapshot.get(step.model.name)
            if model is None or not model.routable:
                # The plan may be a moment older than the registry: a model removed or unloaded
                # since is skipped rather than failing the request.
                problems.append(
                    f"plan.steps[{index}].model {step.model.name!r} "
                    + ("is not in the registry" if model is None else f"cannot be routed to: {model.problem}")
                )
                models.append(None)
            else:
                models.append(model)
        if all(model is None for model in models):
            raise NotFound("; ".join(problems))
        return models

    @grpc_errors
    async def Execute(
        self, request: orchestrator_service_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.ExecuteResponse:
        models = self._validate(request)
        strategy = request.plan.strategy
        if strategy == common_pb2.STRATEGY_ENSEMBLE:
            response = await self._run_ensemble(request, models, context)
        elif strategy == common_pb2.STRATEGY_SEARCH:
            response = await self._run_search(request, models, context)
        elif strategy == common_pb2.STRATEGY_EXPERT:
            response = await self._run_expert(request, models, context)
        else:
            response = await self._run_cascade(request, models, context)
        if any(model is not None and model.answer_kind == GRID for model in models):
            # Grids are scored with several attempts: the next best distinct answers go along,
            # ranked as the strategy ranked its answer.
            rule = RANKING_OF_AGGREGATION.get(request.plan.aggregation) or RANKING_OF_STRATEGY.get(strategy, "best_score")
            response.alternatives.extend(
                common_pb2.Answer(label=label, confidence=confidence)
                for label, confidence in alternatives_to(response.answer.label, offered(request.plan, response.steps), rule)
            )
        return response

    async def _call_model(
        self,
        model: RegisteredModel,
        request: orchestrator_service_pb2.ExecuteRequest,
        timeout_seconds: float,
        prior: common_pb2.InferTensor | None = None,
        seed: int | None = None,
    ) -> tuple[InferResult, ReadAnswer, float, int]:
        """Runs one model; returns its result, the answer read from it, the latency in ms and the cache level that served it.

        ``prior``, an earlier step's output, goes to a refining model through its refinement
        input, bytes unchanged. ``seed`` goes to a sampling model through its sampling input, for a
        fresh sample. A model costly enough is first looked up in the cache's per-model level (L3),
        keyed by its registry version and the exact inputs (the seed included).
        """
        inputs = list(request.inputs)
        if prior is not None and model.refinement_input:
            inputs.append(
                common_pb2.InferTensor(
                    name=model.refinement_input, datatype=prior.datatype, shape=prior.shape, raw_contents=prior.raw_contents
                )
            )
        if seed is not None and model.sampling_input:
            inputs.append(from_numpy(model.sampling_input, np.array([seed], dtype=np.int64)))
        started = time.perf_counter()
        served_by = common_pb2.CACHE_LEVEL_UNSPECIFIED
        result = None
        key = None
        if not request.skip_cache and self._model_cache.worth_caching(model.cost, L3):
            key = model_output_key(L3, model.name, model.version, inputs)
            ref = common_pb2.ModelRef(name=model.name, version=model.version)
            cached = await self._model_cache.lookup(L3, key, request.request_id, ref)
            if cached is not None:
                result = InferResult(list(cached.outputs), cached.model.version)
                served_by = L3
        if result is None:
            # Triton's latest ready version answers: a plan built from a registry a moment old
            # must not fail on a version that has just been replaced. The step reports the version
            # that really ran, and only an output of the registry's version is cached under it.
            triton_started = time.perf_counter()
            result = await self._triton.infer(model.name, 0, inputs, timeout_seconds=timeout_seconds)
            triton_ms = (time.perf_counter() - triton_started) * 1000
            if key is not None and result.model_version == model.version:
                produced = common_pb2.ModelRef(name=model.name, version=result.model_version)
                self._model_cache.store(
                    L3, key, orchestrator_service_pb2.CachedModelOutput(model=produced, outputs=result.outputs), model.cost
                )
        latency_ms = (time.perf_counter() - started) * 1000
        output = next((t for t in result.outputs if t.name == model.output_name), None)
        if output is None:
            raise ModelFailed(
                f"model {model.name} returned no output named {model.output_name!r}, "
                "which its config's inferscale.output declares"
            )
        try:
            if model.answer_kind == GRID:
                score = next((t for t in result.outputs if t.name == model.score_output), None)
                if score is None:
                    raise ValueError(f"no score output named {model.score_output!r}, which inferscale.score_output declares")
                answer = read_grids(bytes_elements(output, model.output_name), to_numpy(score))
            else:
                answer = read_class_probabilities(to_numpy(output))
        except (ValueError, InvalidArgument, IndexError) as error:
            raise ModelFailed(f"model {model.name}'s output {model.output_name!r} cannot be read: {error}") from None
        if served_by == common_pb2.CACHE_LEVEL_UNSPECIFIED:
            # Only Triton's own latency predicts whether the next call fits the deadline.
            self._recent.observe(model.name, triton_ms, answer.confidence)
        return result, answer, latency_ms, served_by

    def _step_span(self, plan: common_pb2.Plan, index: int, step: common_pb2.PlanStep, model: RegisteredModel):  # type: ignore[no-untyped-def]
        return TRACER.start_as_current_span(
            "inferscale.escalation_step",
            attributes={
                telemetry.ATTR_STRATEGY: common_pb2.Strategy.Name(plan.strategy),
                telemetry.ATTR_TASK: plan.task,
                telemetry.ATTR_STEP_INDEX: index,
                telemetry.ATTR_TIER: model.tier,
                telemetry.ATTR_MODEL: model.name,
                telemetry.ATTR_THRESHOLD: step.accept_threshold,
                telemetry.ATTR_CACHE_LEVEL: common_pb2.CacheLevel.Name(common_pb2.CACHE_LEVEL_UNSPECIFIED),
            },
        )

    @staticmethod
    def _annotate(span: trace.Span, step: common_pb2.EscalationStep) -> None:
        """Writes what a step concluded onto its span, before the span ends."""
        span.set_attributes(
            {
                telemetry.ATTR_MODEL_VERSION: step.model.version,
                telemetry.ATTR_CONFIDENCE: step.answer.confidence,
                telemetry.ATTR_DECISION: common_pb2.Decision.Name(step.decision),
                telemetry.ATTR_REASON: step.reason,
                telemetry.ATTR_COST: step.cost,
                telemetry.ATTR_CACHE_LEVEL: common_pb2.CacheLevel.Name(step.cache_level),
            }
        )

    def _record(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        response: orchestrator_service_pb2.ExecuteResponse,
        step: common_pb2.EscalationStep,
    ) -> None:
        """Adds a step that ran to the response and to the monitor's events."""
        response.steps.append(step)
        response.total_cost += step.cost
        self._events.emit(
            monitor_service_pb2.Event(
                request_id=request.request_id,
                step=monitor_service_pb2.StepEvent(task=request.plan.task, strategy=request.plan.strategy, step=step),
            )
        )

    @staticmethod
    def _not_run(index: int, step: common_pb2.PlanStep, decision: int, reason: str) -> common_pb2.EscalationStep:
        return common_pb2.EscalationStep(
            index=index, model=step.model, tier=step.tier, threshold=step.accept_threshold, decision=decision, reason=reason
        )

    @classmethod
    def _skipped(cls, index: int, step: common_pb2.PlanStep) -> common_pb2.EscalationStep:
        return cls._not_run(
            index, step, common_pb2.DECISION_SKIPPED, f"model {step.model.name} {LEFT_ROUTING}"
        )

    @staticmethod
    def _ran(
        index: int,
        step: common_pb2.PlanStep,
        model: RegisteredModel,
        result: InferResult,
        answer: ReadAnswer,
        latency_ms: float,
        decision: int,
        reason: str,
        served_by: int,
    ) -> common_pb2.EscalationStep:
        """Reports a step that ran: the version that answered, the answer, the decision and its cost (0 from a cache)."""
        return common_pb2.EscalationStep(
            index=index,
            model=common_pb2.ModelRef(name=model.name, version=result.model_version),
            tier=model.tier,
            answer=common_pb2.Answer(label=answer.label, confidence=answer.confidence),
            alternatives=[common_pb2.Answer(label=label, confidence=confidence) for label, confidence in answer.alternatives],
            threshold=step.accept_threshold,
            decision=decision,
            reason=reason,
            latency_ms=latency_ms,
            cost=0.0 if served_by else model.cost,
            cache_level=served_by,
        )

    def _stop_reason(
        self, plan: common_pb2.Plan, model: RegisteredModel, spent: float, context: grpc.aio.ServicerContext
    ) -> str:
        """Why the model's call must not start (the cost ceiling, the deadline left), or ""."""
        remaining = context.time_remaining()
        return stop_before(
            cost=model.cost,
            spent=spent,
            cost_ceiling=plan.cost_ceiling,
            p95_ms=self._recent.p95_ms(model.name),
            remaining_ms=remaining * 1000 if remaining is not None else None,
        )

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return remaining if remaining is not None else self._default_timeout

    async def _run_cascade(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        models: list[RegisteredModel | None],
        context: grpc.aio.ServicerContext,
    ) -> orchestrator_service_pb2.ExecuteResponse:
        plan = request.plan
        response = orchestrator_service_pb2.ExecuteResponse()
        complexity = plan.complexity
        skip: dict[int, str] = {}
        if plan.complexity_model:
            score = await self._analyze(request, response, context)
            if score is not None:
                complexity = max(complexity, score)
                tiers = sorted({model.tier for model in models if model is not None})
                if plan.skip_complexity and score >= plan.skip_complexity and len(tiers) > 1:
                    reason = f"complexity {score:.3f} >= {plan.skip_complexity:.3f}: the cheapest tier is skipped"
                    skip = {i: reason for i, model in enumerate(models) if model is not None and model.tier == tiers[0]}
        runnable = [index for index, model in enumerate(models) if model is not None and index not in skip]
        best: tuple[common_pb2.EscalationStep, list[common_pb2.InferTensor]] | None = None
        accepted = False
        # In a refinement plan each step refines the answer of the step before it.
        previous_output: common_pb2.InferTensor | None = None
        refining = plan.strategy == common_pb2.STRATEGY_REFINEMENT
        for index, (step, model) in enumerate(zip(plan.steps, models, strict=True)):
            if model is None:
                response.steps.append(
                    self._skipped(index, step)
                )
                continue
            if index in skip:
                response.steps.append(self._not_run(index, step, common_pb2.DECISION_SKIPPED, skip[index]))
                continue
            if best is not None:
                why = self._stop_reason(plan, model, response.total_cost, context)
                if why:
                    response.steps.append(
                        self._not_run(index, step, common_pb2.DECISION_STOPPED, f"{why}; the best answer so far is returned")
                    )
                    break
            later = [models[i] for i in runnable if i > index]
            next_model = later[0] if later else None
            next_tier = None
            if next_model is not None:
                expected = self._recent.mean_confidence(next_model.name)
                # Before a tier has answered anything, assume it is worth trying.
                next_tier = NextTier(cost=next_model.cost, expected_accuracy=1.0 if expected is None else expected)
            with self._step_span(plan, index, step, model) as span:
                try:
                    result, answer, latency_ms, served_by = await self._call_model(
                        model, request, self._timeout(context), previous_output if refining else None
                    )
                except (ModelFailed, Unavailable) as error:
                    if best is None and next_model is None:
                        raise
                    # A tier that fails leaves the others: the next tier, or the best answer so far.
                    failed = self._not_run(index, step, common_pb2.DECISION_FAILED, f"model {model.name} failed: {error}")
                    self._annotate(span, failed)
                    self._record(request, response, failed)
                    continue
                decision = decide(
                    answer.confidence,
                    step.accept_threshold,
                    is_last=index == runnable[-1],
                    escalate_threshold=step.escalate_threshold if step.escalate_threshold > 0 else None,
                    complexity=complexity,
                    next_tier=next_tier,
                    min_gain_per_cost=self._min_gain_per_cost,
                )
                reported = self._ran(
                    index,
                    step,
                    model,
                    result,
                    answer,
                    latency_ms,
                    common_pb2.DECISION_ACCEPT if decision.accept else common_pb2.DECISION_ESCALATE,
                    decision.reason,
                    served_by,
                )
                self._annotate(span, reported)
                self._record(request, response, reported)
            previous_output = next(t for t in result.outputs if t.name == model.output_name)
            if best is None or decision.accept or answer.confidence > best[0].answer.confidence:
                best = (reported, list(result.outputs))
            if decision.accept:
                accepted = True
                break
        # A step past the last one run whose model left routing is reported too: its absence made
        # an earlier step the last, accepted whatever its confidence, so the answer is not the plan's.
        reached = {s.index for s in response.steps}
        response.steps.extend(
            self._skipped(i, plan.steps[i]) for i in range(len(models)) if models[i] is None and i not in reached
        )
        if best is None:
            raise ModelFailed("no step of the plan produced an answer")
        if not accepted:
            # Stopped or failed past the last answer: the most confident answer so far stands.
            for reported_step in response.steps:
                if reported_step.index == best[0].index:
                    reported_step.decision = common_pb2.DECISION_ACCEPT
                    reported_step.reason += "; accepted as the best answer so far"
        response.answer.CopyFrom(best[0].answer)
        response.outputs.extend(best[1])
        return response

    async def _analyze(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        response: orchestrator_service_pb2.ExecuteResponse,
        context: grpc.aio.ServicerContext,
    ) -> float | None:
        """Runs the plan's complexity model on the request and reports it as a step (index -1).

        Returns the score in [0, 1], or None when the model is missing or fails: the plan then
        runs without it (a cascade as if unanalysed; an expert plan with its most capable expert).
        """
        name = request.plan.complexity_model
        model = self._registry.snapshot.get(name)
        analysis = common_pb2.EscalationStep(index=-1, model=common_pb2.ModelRef(name=name))
        with TRACER.start_as_current_span(
            "inferscale.complexity_analysis",
            attributes={telemetry.ATTR_TASK: request.plan.task, telemetry.ATTR_MODEL: name},
        ) as span:
            if model is None or not model.serves_as(ROLE_COMPLEXITY):
                analysis.decision = common_pb2.DECISION_FAILED
                analysis.reason = f"complexity model {name!r} is not a ready model with inferscale.role complexity"
            else:
                started = time.perf_counter()
                try:
                    result = await self._triton.infer(model.name, 0, list(request.inputs), timeout_seconds=self._timeout(context))
                    output = next((t for t in result.outputs if t.name == model.output_name), None)
                    if output is None:
                        raise ModelFailed(f"model {name} returned no output named {model.output_name!r}")
                    values = to_numpy(output).reshape(-1)
                    if values.size < 1 or not np.isfinite(values).all():
                        raise ModelFailed(f"model {name}'s output {model.output_name!r} holds no finite score")
                    score = float(np.clip(values.max(), 0.0, 1.0))
                    analysis.model.version = result.model_version
                    analysis.answer.CopyFrom(common_pb2.Answer(confidence=score))  # no label: not an answer to score
                    analysis.decision = common_pb2.DECISION_ANALYZED
                    analysis.reason = f"complexity {score:.3f}"
                    analysis.cost = model.cost
                except (ModelFailed, Unavailable) as error:
                    analysis.decision = common_pb2.DECISION_FAILED
                    analysis.reason = f"complexity model {name} failed: {error}"
                analysis.latency_ms = (time.perf_counter() - started) * 1000
            span.set_attributes(
                {
                    telemetry.ATTR_DECISION: common_pb2.Decision.Name(analysis.decision),
                    telemetry.ATTR_REASON: analysis.reason,
                    telemetry.ATTR_COST: analysis.cost,
                    telemetry.ATTR_COMPLEXITY: analysis.answer.confidence,
                }
            )
        self._record(request, response, analysis)
        return analysis.answer.confidence if analysis.decision == common_pb2.DECISION_ANALYZED else None

    async def _run_expert(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        models: list[RegisteredModel | None],
        context: grpc.aio.ServicerContext,
    ) -> orchestrator_service_pb2.ExecuteResponse:
        """Scores the request's complexity, then runs the one expert whose band holds the score."""
        plan = request.plan
        response = orchestrator_service_pb2.ExecuteResponse()
        experts = [(i, m) for i, m in enumerate(models) if m is not None and m.expert_high > 0]
        for index, model in enumerate(models):
            if model is None:
                response.steps.append(self._skipped(index, plan.steps[index]))
        if not experts:
            raise NotFound("no step of the plan is a model that declares inferscale.expert_complexity")
        score = await self._analyze(request, response, context)
        if score is None:
            index, model = max(experts, key=lambda e: e[1].expert_high)
            reason = "no complexity score: the most capable expert answers"
        else:
            index, model = experts[choose_expert([(m.expert_low, m.expert_high) for _, m in experts], score)]
            reason = f"complexity {score:.3f}, band [{model.expert_low:g}, {model.expert_high:g}): the expert answers"
        left = plan.cost_ceiling - response.total_cost if plan.cost_ceiling else math.inf
        if model.cost > left:
            # The cost ceiling comes first: the most capable expert that still fits answers.
            affordable = [e for e in experts if e[1].cost <= left]
            if not affordable:
                raise InvalidArgument(f"cost_ceiling {plan.cost_ceiling} leaves {left:g} after the analysis: no expert fits")
            index, model = max(affordable, key=lambda e: e[1].expert_high)
            reason += f"; over the cost ceiling {plan.cost_ceiling:g}, so {model.name}, the most capable that fits, answers"
        step = plan.steps[index]
        for other, _ in experts:
            if other != index:
                passed_over = self._not_run(
                    other, plan.steps[other], common_pb2.DECISION_SKIPPED, "another expert's band holds the score"
                )
                response.steps.append(passed_over)
        with self._step_span(plan, index, step, model) as span:
            result, answer, latency_ms, served_by = await self._call_model(model, request, self._timeout(context))
            reported = self._ran(index, step, model, result, answer, latency_ms, common_pb2.DECISION_ACCEPT, reason, served_by)
            self._annotate(span, reported)
            self._record(request, response, reported)
        response.answer.CopyFrom(reported.answer)
        response.outputs.extend(result.outputs)
        return response

    async def _run_search(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        models: list[RegisteredModel | None],
        context: grpc.aio.ServicerContext,
    ) -> orchestrator_service_pb2.ExecuteResponse:
        """Adaptive multi-model search (see search.py): one call at a time, up to plan.max_calls."""
        plan = request.plan
        response = orchestrator_service_pb2.ExecuteResponse()
        members: list[tuple[int, RegisteredModel]] = []
        for index, (step, model) in enumerate(zip(plan.steps, models, strict=True)):
            if model is None:
                response.steps.append(self._skipped(index, step))
            else:
                members.append((index, model))
        # Seeded by the request id: the same request searches the same way, and its samples can
        # be reproduced.
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(request.request_id.encode()).digest()[:8], "big"))
        search = AdaptiveSearch(
            [SearchMember(bool(m.sampling_input), bool(m.refinement_input), m.cost) for _, m in members], rng
        )
        outputs: dict[int, tuple[list[common_pb2.InferTensor], common_pb2.InferTensor]] = {}
        last_error: Exception | None = None
        for _ in range(plan.max_calls):
            budget_left = plan.cost_ceiling - response.total_cost if plan.cost_ceiling else None
            arm = search.next_arm(budget_left)
            if arm is None:
                break
            index, model = members[arm.member]
            step = plan.steps[index]
            action = common_pb2.SEARCH_ACTION_SAMPLE if arm.action == SAMPLE else common_pb2.SEARCH_ACTION_REFINE
            if search.candidates:
                why = self._stop_reason(plan, model, response.total_cost, context)
                if why:
                    stopped = self._not_run(
                        index, step, common_pb2.DECISION_STOPPED, f"{why}; the search's answer so far is returned"
                    )
                    stopped.search_action = action
                    response.steps.append(stopped)
                    break
            refined = search.to_refine(arm.member) if arm.action == REFINE else None
            # A sampling model's first answer is its plain one; later samples get fresh seeds.
            seed = int(rng.integers(2**62)) if arm.action == SAMPLE and model.sampling_input and arm.calls else None
            with self._step_span(plan, index, step, model) as span:
                span.set_attribute(telemetry.ATTR_SEARCH_ACTION, common_pb2.SearchAction.Name(action))
                try:
                    result, answer, latency_ms, served_by = await self._call_model(
                        model, request, self._timeout(context), outputs[refined.call][1] if refined else None, seed
                    )
                except (ModelFailed, Unavailable) as error:
                    last_error = error
                    search.fail(arm)
                    failed = self._not_run(index, step, common_pb2.DECISION_FAILED, f"model {model.name} failed: {error}")
                    failed.search_action = action
                    self._annotate(span, failed)
                    self._record(request, response, failed)
                    continue
                candidate = search.observe(arm, answer.label, answer.confidence, refined)
                outputs[candidate.call] = (
                    list(result.outputs),
                    next(t for t in result.outputs if t.name == model.output_name),
                )
                done = answer.confidence >= step.accept_threshold
                what = f"refines answer {refined.call}" if refined else f"sample {arm.calls} of {model.name}"
                reason = (
                    f"answer {candidate.call} ({what}): score {answer.confidence:.3f} "
                    + (f">= threshold {step.accept_threshold:.3f}, the search ends" if done
                       else f"< threshold {step.accept_threshold:.3f}, the search goes on")
                )
                reported = self._ran(
                    index, step, model, result, answer, latency_ms,
                    common_pb2.DECISION_ACCEPT if done else common_pb2.DECISION_ESCALATE, reason, served_by,
                )
                reported.search_action = action
                self._annotate(span, reported)
                self._record(request, response, reported)
            if done:
                break
        if not search.candidates:
            if last_error is not None:
                raise last_error
            # No call was made: before the first one only the cost ceiling rules a member out.
            raise InvalidArgument(f"plan.cost_ceiling {plan.cost_ceiling:g} is below the cost of every model of the search")
        chosen, confidence = search.answer()
        if plan.aggregation == common_pb2.AGGREGATION_BEST_SCORE:
            calls = [s for s in response.steps if s.decision in ANSWERED]
            combined = best_score(offered(plan, calls))
            call = offering(combined.label, calls)
            chosen, confidence = search.candidates[call], combined.confidence
            response.answer.CopyFrom(common_pb2.Answer(label=combined.label, confidence=confidence))
        else:
            response.answer.CopyFrom(common_pb2.Answer(label=chosen.label, confidence=confidence))
        labels, scores = search.label_weights()
        response.outputs.extend(outputs[chosen.call][0])
        response.uncertainty.CopyFrom(
            common_pb2.Uncertainty(
                vote_entropy=vote_entropy(labels, scores),
                members_answered=len(search.candidates),
                members_failed=sum(1 for s in response.steps if s.decision == common_pb2.DECISION_FAILED),
            )
        )
        return response

    async def _run_ensemble(
        self,
        request: orchestrator_service_pb2.ExecuteRequest,
        models: list[RegisteredModel | None],
        context: grpc.aio.ServicerContext,
    ) -> orchestrator_service_pb2.ExecuteResponse:
        plan = request.plan
        response = orchestrator_service_pb2.ExecuteResponse()
        remaining = context.time_remaining()
        # Members get most of the deadline; the rest is kept to combine and answer, so that a
        # slow member costs its vote rather than the whole request.
        member_timeout = remaining * 0.8 if remaining is not None else self._default_timeout

        async def run_member(index: int, step: common_pb2.PlanStep, model: RegisteredModel):  # type: ignore[no-untyped-def]
            with self._step_span(plan, index, step, model) as span:
                try:
                    result, answer, latency_ms, served_by = await self._call_model(model, request, member_timeout)
                except (ModelFailed, Unavailable, DeadlineExceeded, InvalidArgument) as error:
                    if isinstance(error, InvalidArgument):
                        raise  # the input is at fault, not the member: every member would refuse it
                    failed = self._not_run(index, step, common_pb2.DECISION_FAILED, f"member failed: {error}")
                    self._annotate(span, failed)
                    return failed, None, None
                reported = self._ran(
                    index, step, model, result, answer, latency_ms, common_pb2.DECISION_CONTRIBUTED, "answered in time", served_by
                )
                self._annotate(span, reported)
                output = next(t for t in result.outputs if t.name == model.output_name)
                probabilities = to_numpy(output) if model.answer_kind != GRID else None
                return reported, list(result.outputs), probabilities

        members = [(i, step, model) for i, (step, model) in enumerate(zip(plan.steps, models, strict=True)) if model is not None]
        for index, step in enumerate(plan.steps):
            if models[index] is None:
                response.steps.append(
                    self._skipped(index, step)
                )
        outcomes = await asyncio.gather(*(run_member(i, step, model) for i, step, model in members))
        answered = []
        for (index, step, _), (reported, outputs, probabilities) in zip(members, outcomes, strict=True):
            self._record(request, response, reported)
            if reported.decision == common_pb2.DECISION_CONTRIBUTED:
                answered.append((step, reported, probabilities, outputs))
        response.steps.sort(key=lambda s: s.index)
        if not answered:
            raise Unavailable("every ensemble member failed: " + "; ".join(s.reason for s in response.steps))
        weights = [step.weight or 1.0 for step, _, _, _ in answered]
        reports = [reported for _, reported, _, _ in answered]
        labels = [reported.answer.label for reported in reports]
        confidences = [reported.answer.confidence for reported in reports]
        aggregation = plan.aggregation or common_pb2.AGGREGATION_MEAN_PROBABILITY
        if aggregation == common_pb2.AGGREGATION_MEAN_PROBABILITY:
            if any(p is None for _, _, p, _ in answered):
                raise InvalidArgument(
                    "aggregation AGGREGATION_MEAN_PROBABILITY needs members that answer class probabilities; "
                    "grid answers combine by AGGREGATION_BEST_SCORE, AGGREGATION_PLURALITY or AGGREGATION_WEIGHTED_VOTE"
                )
            combined = mean_probability([p for _, _, p, _ in answered], weights)
        elif aggregation == common_pb2.AGGREGATION_WEIGHTED_VOTE:
            combined = weighted_vote(labels, confidences, weights)
        elif aggregation == common_pb2.AGGREGATION_BEST_SCORE:
            combined = best_score(offered(plan, reports))
        else:
            combined = plurality(labels)
        with TRACER.start_as_current_span(
            "inferscale.aggregation",
            attributes={
                telemetry.ATTR_STRATEGY: common_pb2.Strategy.Name(plan.strategy),
                telemetry.ATTR_AGGREGATION: common_pb2.Aggregation.Name(aggregation),
                telemetry.ATTR_VOTE_ENTROPY: combined.vote_entropy,
                telemetry.ATTR_MEMBERS_FAILED: len(members) - len(answered),
                telemetry.ATTR_CONFIDENCE: combined.confidence,
            },
        ):
            pass
        response.answer.CopyFrom(common_pb2.Answer(label=combined.label, confidence=combined.confidence))
        output_name = models[answered[0][1].index].output_name  # type: ignore[union-attr]
        if combined.probabilities is not None:
            response.outputs.append(from_numpy(output_name, combined.probabilities))
        else:
            # A vote: the outputs of the member that offered the winning answer.
            response.outputs.extend(answered[offering(combined.label, reports)][3])
        response.uncertainty.CopyFrom(
            common_pb2.Uncertainty(
                vote_entropy=combined.vote_entropy,
                probability_spread=combined.probability_spread,
                members_answered=len(answered),
                members_failed=len(members) - len(answered),
            )
        )
        return response

    @grpc_errors
    async def LoadModel(
        self, request: orchestrator_service_pb2.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.LoadModelResponse:
        if not request.model_name:
            raise InvalidArgument("model_name must name a model of the Triton repository")
        # Triton answers a name its repository lacks INTERNAL ("failed to poll from model
        # repository"), as if it had failed itself: such a name is refused first, as the caller's fault.
        if request.model_name not in {entry.name for entry in await self._triton.repository_index()}:
            raise NotFound(f"model_name {request.model_name!r} is not in Triton's model repository")
        await self._repository_call(self._triton.load_model, request.model_name)
        snapshot = await self._registry.refresh()
        model = snapshot.get(request.model_name)
        if model is None:
            raise NotFound(f"model_name {request.model_name!r} loaded but is not in Triton's repository index")
        return orchestrator_service_pb2.LoadModelResponse(model=_model_info(model))

    @grpc_errors
    async def UnloadModel(
        self, request: orchestrator_service_pb2.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.UnloadModelResponse:
        if not request.model_name:
            raise InvalidArgument("model_name must name a model of the Triton repository")
        if self._registry.snapshot.get(request.model_name) is None:
            raise NotFound(f"model_name {request.model_name!r} is not in the registry")
        await self._repository_call(self._triton.unload_model, request.model_name)
        removed_before = self._registry.retired_entries_removed
        await self._registry.refresh()
        return orchestrator_service_pb2.UnloadModelResponse(
            cache_entries_removed=self._registry.retired_entries_removed - removed_before
        )

    @staticmethod
    async def _repository_call(call, model_name: str) -> None:  # type: ignore[no-untyped-def]
        try:
            await call(model_name)
        except InferScaleError as error:
            if "not allowed" in str(error):
                raise FailedPrecondition(
                    f"Triton refuses to load or unload models unless it runs with --model-control-mode=explicit: {error}"
                ) from None
            raise
