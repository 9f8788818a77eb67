"""The one way a strategy runs a step of a plan: call the model, trace the step, report and record it.

Every strategy goes through a ``StepRunner`` for what all of them share: a step starts with
``StepRunner.step`` (its span) and ends in the response with ``StepRunner.record``, whatever the
strategy, so that what watches steps (the monitor's events, the spans) is fed in one place.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from opentelemetry import trace

from inferscale import telemetry
from inferscale.errors import InvalidArgument, ModelFailed, Unavailable
from inferscale.events import EventSender
from inferscale.tensors import bytes_elements, bytes_tensor, from_numpy, to_numpy
from inferscale.triton.client import InferResult
from inferscale.v1 import common_pb2, monitor_service_pb2, orchestrator_service_pb2
from services.orchestrator.escalation import (
    LEFT_ROUTING,
    ReadAnswer,
    read_class_probabilities,
    read_grids,
    stop_before,
)
from services.orchestrator.latency import RecentSteps
from services.orchestrator.model_cache import L3, ModelOutputCache, model_output_key
from services.orchestrator.registry import GRID, ROLE_COMPLEXITY, VERIFIER, RegisteredModel
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.text.contract import Sampling, Token
from services.orchestrator.text.prompts import Turn, answer_turns, refinement_turns
from services.orchestrator.text_calls import (
    TextAnswer,
    TextCaller,
    estimated_text_cost,
    sample_seed,
)
from services.orchestrator.triton_pool import TritonPool

TRACER = trace.get_tracer("inferscale.orchestrator")
# Steps that never called their model: the monitor hears only of steps that ran or tried to.
NOT_RUN = frozenset({common_pb2.DECISION_SKIPPED, common_pb2.DECISION_STOPPED})


class Deadline(Protocol):
    """What has a deadline: a gRPC call's context, or an execution of a plan."""

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline; None when there is none."""


@dataclass
class Execution:
    """One Execute call as its strategy runs it: the request, the response it builds, the time it has."""

    request: orchestrator_service_pb2.ExecuteRequest
    response: orchestrator_service_pb2.ExecuteResponse
    # The caller's deadline as the gRPC context reads it: seconds left, or None without one.
    time_remaining: Callable[[], float | None]
    # ExecuteStream's: where each step's start, tokens and decision go as they happen.
    sink: Callable[[orchestrator_service_pb2.ExecuteStreamResponse], None] | None = None
    # The text steps' generations, by their position among the response's steps.
    texts: dict[int, TextAnswer] = field(default_factory=dict)
    # The position of the step whose text is the answer, when the strategy chose it otherwise
    # than by accepting a step (a vote, a verifier).
    answer_position: int | None = None
    # The last failure of a sample, raised when no sample answered.
    last_error: Exception | None = None
    # This execution's own random bytes, from which its samples' seeds are drawn.
    nonce: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def plan(self) -> common_pb2.Plan:
        """The plan the request asks to run."""
        return self.request.plan


@dataclass(frozen=True)
class ModelCall:
    """What one call of a model gave: its result, the answer read from it, its latency, who served it."""

    model: RegisteredModel
    result: InferResult
    answer: ReadAnswer
    latency_ms: float
    # The cache level that answered instead of Triton; CACHE_LEVEL_UNSPECIFIED when Triton ran.
    served_by: int
    # A text model's generation, its cost in tokens, and how its confidence was read.
    text: TextAnswer | None = None

    @property
    def slipped(self) -> bool:
        """Whether the call's text failed its model's answer check (an arithmetic slip)."""
        return self.text is not None and bool(self.text.slips)

    @property
    def output(self) -> common_pb2.InferTensor:
        """The output the model's config declares as its answer (present: reading the answer needed it)."""
        return next(t for t in self.result.outputs if t.name == self.model.output_name)


def not_run(index: int, step: common_pb2.PlanStep, decision: int, reason: str) -> common_pb2.EscalationStep:
    """Reports a step whose model gave no answer: skipped, stopped or failed, and why."""
    return common_pb2.EscalationStep(
        index=index, model=step.model, tier=step.tier, threshold=step.accept_threshold, decision=decision, reason=reason
    )


def skipped(index: int, step: common_pb2.PlanStep) -> common_pb2.EscalationStep:
    """Reports a step whose model left routing after the plan was made."""
    return not_run(index, step, common_pb2.DECISION_SKIPPED, f"model {step.model.name} {LEFT_ROUTING}")


def ran(
    index: int, step: common_pb2.PlanStep, call: ModelCall, decision: int, reason: str
) -> common_pb2.EscalationStep:
    """Reports a step that ran: the version that answered, the answer, the decision and its cost (0 from a cache)."""
    model, answer = call.model, call.answer
    cost = model.cost if call.text is None else call.text.cost
    usage = None
    if call.text is not None:
        usage = common_pb2.TokenUsage(input_tokens=call.text.input_tokens, output_tokens=call.text.output_tokens)
        reason = f"{call.text.why}; {reason}"
    return common_pb2.EscalationStep(
        index=index,
        model=common_pb2.ModelRef(name=model.name, version=call.result.model_version),
        tier=model.tier,
        answer=common_pb2.Answer(
            label=answer.label, confidence=answer.confidence, text=call.text.generated.text if call.text else ""
        ),
        usage=usage,
        alternatives=[common_pb2.Answer(label=label, confidence=conf) for label, conf in answer.alternatives],
        threshold=step.accept_threshold,
        decision=decision,
        reason=reason,
        latency_ms=call.latency_ms,
        cost=0.0 if call.served_by else cost,
        cache_level=call.served_by,
    )


def expected_cost(execution: Execution, model: RegisteredModel) -> float:
    """What one call of ``model`` is expected to cost: a generation by this prompt and the most
    tokens it may write, any other call by the model's declared cost."""
    return estimated_text_cost(model, execution.request.text) if model.generates_text else model.cost


def text_output(execution: Execution) -> list[common_pb2.InferTensor]:
    """The chosen text step's generation as its model's output tensor; none when no text was chosen."""
    position = execution.answer_position
    text = execution.texts.get(position) if position is not None else None
    if text is None:
        return []
    return [bytes_tensor(text.model.output_name, [text.generated.text])]


def annotate(span: trace.Span, step: common_pb2.EscalationStep) -> None:
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


class StepRunner:
    """Runs, traces and records the steps of every plan; built once, shared by every request."""

    def __init__(
        self,
        registry: TritonRegistry,
        triton: TritonPool,
        events: EventSender,
        model_cache: ModelOutputCache,
        *,
        default_timeout_seconds: float,
        min_gain_per_cost: float,
    ) -> None:
        self._registry = registry
        self._triton = triton
        self._events = events
        self._model_cache = model_cache
        self._default_timeout = default_timeout_seconds
        # The least expected gain in accuracy per unit of cost that makes a cascade escalate.
        self.min_gain_per_cost = min_gain_per_cost
        # Latency and confidence of each model's recent Triton calls: deadlines and expected gains.
        self.recent = RecentSteps()
        self.text = TextCaller(triton, model_cache, self.recent)

    def timeout(self, deadline: Deadline, share: float = 1.0) -> float:
        """The seconds a call may take: ``share`` of the time left before the deadline, else the default."""
        remaining = deadline.time_remaining()
        return remaining * share if remaining is not None else self._default_timeout

    def stop_reason(self, execution: Execution, model: RegisteredModel) -> str:
        """Why the model's call must not start (the cost ceiling, the deadline left), or ""."""
        remaining = execution.time_remaining()
        # A generation's time grows with its prompt and max_tokens: the model's recent calls, made
        # for other prompts, say nothing of this one's (a caller's long prompts must not stop
        # everyone's escalation).
        p95_ms = None if model.generates_text else self.recent.p95_ms(model.name)
        return stop_before(
            cost=expected_cost(execution, model),
            spent=execution.response.total_cost,
            cost_ceiling=execution.plan.cost_ceiling,
            p95_ms=p95_ms,
            remaining_ms=remaining * 1000 if remaining is not None else None,
        )

    @staticmethod
    def announce(
        execution: Execution, index: int, model: RegisteredModel, action: int = common_pb2.SEARCH_ACTION_UNSPECIFIED
    ) -> None:
        """Tells a streamed execution that a call of ``model`` starts, at the position its step will take."""
        if execution.sink is not None:
            execution.sink(
                orchestrator_service_pb2.ExecuteStreamResponse(
                    step_started=common_pb2.StepStarted(
                        index=index,
                        position=len(execution.response.steps),
                        model=common_pb2.ModelRef(name=model.name, version=model.version),
                        tier=model.tier,
                        search_action=action,
                    )
                )
            )

    @contextmanager
    def step(
        self,
        execution: Execution,
        index: int,
        step: common_pb2.PlanStep,
        model: RegisteredModel,
        action: int = common_pb2.SEARCH_ACTION_UNSPECIFIED,
    ) -> Iterator[trace.Span]:
        """Opens the span of a step that calls ``model``; ``record`` (or ``annotate``) closes its account.

        A streamed execution hears that the step starts, at the position it will take.
        """
        plan = execution.plan
        self.announce(execution, index, model, action)
        with TRACER.start_as_current_span(
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
        ) as span:
            yield span

    def record(
        self, execution: Execution, step: common_pb2.EscalationStep, span: trace.Span | None = None
    ) -> None:
        """Adds a decided step to the response, its cost to the total, and, if it ran, to the monitor's events.

        ``span``, the step's own, is annotated with the decision first; a step recorded after its
        span ended (an ensemble's members, recorded in plan order) was annotated in it.
        """
        if span is not None:
            annotate(span, step)
        execution.response.steps.append(step)
        execution.response.total_cost += step.cost
        if execution.sink is not None:
            execution.sink(orchestrator_service_pb2.ExecuteStreamResponse(step_finished=step))
        if step.decision not in NOT_RUN:
            self._events.emit(
                monitor_service_pb2.Event(
                    request_id=execution.request.request_id,
                    step=monitor_service_pb2.StepEvent(
                        task=execution.plan.task, strategy=execution.plan.strategy, step=step
                    ),
                )
            )

    def stopped(self, execution: Execution, index: int, step: common_pb2.PlanStep, model: RegisteredModel, standing: str) -> bool:
        """Records a STOPPED step and returns True when the model's call must not start (the cost
        ceiling, the deadline); ``standing`` says what answer stands instead."""
        why = self.stop_reason(execution, model)
        if why:
            self.record(execution, not_run(index, step, common_pb2.DECISION_STOPPED, f"{why}; {standing}"))
        return bool(why)

    async def call_or_record_failure(
        self, execution: Execution, index: int, step: common_pb2.PlanStep, model: RegisteredModel, span: trace.Span
    ) -> ModelCall | None:
        """Calls the model for one more sample; a failure is recorded as the step's (FAILED, with the
        error kept in ``execution.last_error``) and gives None, so that sampling goes on."""
        try:
            return await self.call(execution, model, self.timeout(execution))
        except (ModelFailed, Unavailable) as error:
            execution.last_error = error
            self.record(execution, not_run(index, step, common_pb2.DECISION_FAILED, f"sample failed: {error}"), span)
            return None

    def record_skipped(self, execution: Execution, models: list[RegisteredModel | None]) -> None:
        """Records every step whose model left routing after the plan was made."""
        for index, model in enumerate(models):
            if model is None:
                self.record(execution, skipped(index, execution.plan.steps[index]))

    async def call(
        self,
        execution: Execution,
        model: RegisteredModel,
        timeout_seconds: float,
        prior: common_pb2.InferTensor | None = None,
        seed: int | None = None,
    ) -> ModelCall:
        """Runs one model on the request's inputs and reads its answer.

        ``prior``, an earlier step's output, goes to a refining model through its refinement
        input, bytes unchanged. ``seed`` goes to a sampling model through its sampling input, for a
        fresh sample. A model costly enough is first looked up in the cache's per-model level (L3),
        keyed by its registry version and the exact inputs (the seed included).
        """
        request = execution.request
        if model.generates_text:
            return await self._call_text(execution, model, timeout_seconds, prior, seed)
        inputs = list(request.inputs)
        if prior is not None and model.refinement_input:
            inputs.append(
                common_pb2.InferTensor(
                    name=model.refinement_input,
                    datatype=prior.datatype,
                    shape=prior.shape,
                    raw_contents=prior.raw_contents,
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
                entry = orchestrator_service_pb2.CachedModelOutput(model=produced, outputs=result.outputs)
                self._model_cache.store(L3, key, entry, model.cost)
        latency_ms = (time.perf_counter() - started) * 1000
        answer = _read_answer(model, result)
        if served_by == common_pb2.CACHE_LEVEL_UNSPECIFIED:
            # Only Triton's own latency predicts whether the next call fits the deadline.
            self.recent.observe(model.name, triton_ms, answer.confidence)
        return ModelCall(model, result, answer, latency_ms, served_by)

    def tokens_sink(self, execution: Execution, model_name: str) -> Callable[[list[Token]], None] | None:
        """Where a text step's tokens go as they are generated: the stream, at the step's coming position."""
        if execution.sink is None:
            return None
        sink, position = execution.sink, len(execution.response.steps)

        def send(tokens: list[Token]) -> None:
            sink(
                orchestrator_service_pb2.ExecuteStreamResponse(
                    tokens=common_pb2.TokenDelta(
                        position=position,
                        tokens=[
                            common_pb2.GeneratedToken(text=t.text, logprob=t.logprob, step=position, model=model_name)
                            for t in tokens
                        ],
                    )
                )
            )

        return send

    def verifier(self, execution: Execution) -> RegisteredModel:
        """The plan's verifier model; InvalidArgument when it names none that generates text."""
        name = execution.plan.verifier_model
        model = self._registry.snapshot.get(name) if name else None
        if model is None or not model.ready or model.problem or not model.generates_text:
            raise InvalidArgument(f"plan.verifier_model {name!r} is not a ready model that generates text")
        return model

    async def _call_text(
        self,
        execution: Execution,
        model: RegisteredModel,
        timeout_seconds: float,
        prior: common_pb2.InferTensor | None,
        seed: int | None,
    ) -> ModelCall:
        """A text step: the request's turns (with a draft to refine when ``prior`` holds one), sampled
        with ``seed`` when given, else as the request's sampling says; a "verifier" confidence is the
        plan's verifier's score, its cost counted in the step's."""
        request = execution.request
        context = [Turn(m.role, m.content) for m in request.text.context]
        if prior is not None:
            draft = b"".join(bytes_elements(prior, "prior")).decode("utf-8", errors="replace")
            turns = refinement_turns(context, request.text.prompt, draft)
        else:
            turns = answer_turns(context, request.text.prompt)
        limits = request.text.sampling
        temperature = limits.temperature if limits.HasField("temperature") else 0.0
        position = len(execution.response.steps)
        if temperature > 0 and seed is None:
            seed = sample_seed(execution.nonce, f"step {position}")
        sampling = Sampling(limits.max_tokens, temperature, seed if temperature > 0 else None)
        text = await self.text.answer(
            model,
            turns,
            sampling,
            request_id=request.request_id,
            position=position,
            nonce=execution.nonce,
            skip_cache=request.skip_cache,
            timeout_seconds=timeout_seconds,
            on_tokens=self.tokens_sink(execution, model.name),
        )
        # A text that failed its answer check keeps confidence 0: no verifier call is spent on it.
        if model.confidence_method == VERIFIER and not text.slips:
            verdict = await self.text.verify(
                self.verifier(execution),
                request.text.prompt,
                text.generated.text,
                request_id=request.request_id,
                skip_cache=request.skip_cache,
                timeout_seconds=self.timeout(execution),
            )
            text.confidence, text.why = verdict.confidence, f"{verdict.why} by {verdict.model.name}"
            if not verdict.served_by:
                text.count(verdict.generated, verdict.model)
        execution.texts[position] = text
        result = InferResult([bytes_tensor(model.output_name, [text.generated.text])], text.model_version)
        answer = ReadAnswer(text.label, text.confidence)
        return ModelCall(model, result, answer, text.latency_ms, text.served_by, text)

    async def analyze(self, execution: Execution) -> float | None:
        """Runs the plan's complexity model on the request and records it as a step (index -1).

        Returns the score in [0, 1], or None when the model is missing or fails: the plan then
        runs without it (a cascade as if unanalysed; an expert plan with its most capable expert).
        """
        plan = execution.plan
        name = plan.complexity_model
        model = self._registry.snapshot.get(name)
        analysis = common_pb2.EscalationStep(index=-1, model=common_pb2.ModelRef(name=name))
        with TRACER.start_as_current_span(
            "inferscale.complexity_analysis",
            attributes={telemetry.ATTR_TASK: plan.task, telemetry.ATTR_MODEL: name},
        ) as span:
            if model is None or not model.serves_as(ROLE_COMPLEXITY):
                analysis.decision = common_pb2.DECISION_FAILED
                analysis.reason = f"complexity model {name!r} is not a ready model with inferscale.role complexity"
            else:
                started = time.perf_counter()
                try:
                    result = await self._triton.infer(
                        model.name, 0, list(execution.request.inputs), timeout_seconds=self.timeout(execution)
                    )
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
        self.record(execution, analysis)
        return analysis.answer.confidence if analysis.decision == common_pb2.DECISION_ANALYZED else None


def _read_answer(model: RegisteredModel, result: InferResult) -> ReadAnswer:
    """Reads the answer from the outputs the model's config declares; ModelFailed when they cannot be read."""
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
                raise ValueError(
                    f"no score output named {model.score_output!r}, which inferscale.score_output declares"
                )
            return read_grids(bytes_elements(output, model.output_name), to_numpy(score))
        return read_class_probabilities(to_numpy(output))
    except (ValueError, InvalidArgument, IndexError) as error:
        raise ModelFailed(f"model {model.name}'s output {model.output_name!r} cannot be read: {error}") from None
