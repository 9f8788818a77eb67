"""The orchestrator's RPC handlers: protos in, plan execution on Triton, protos out."""

from __future__ import annotations

import time

import grpc
from opentelemetry import trace

from inferscale import telemetry
from inferscale.auth import require_bearer_token
from inferscale.errors import FailedPrecondition, InferScaleError, InvalidArgument, ModelFailed, NotFound, grpc_errors
from inferscale.events import EventSender
from inferscale.tensors import to_numpy, validate_tensor
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)
from services.orchestrator.escalation import decide, read_class_probabilities
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.triton_pool import TritonPool

TRACER = trace.get_tracer("inferscale.orchestrator")


def _model_info(model: RegisteredModel) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name=model.name, version=model.version),
        task=model.task,
        tier=model.tier,
        cost=model.cost,
        answer_kind=model.answer_kind,
        confidence_method=model.confidence_method,
        output_name=model.output_name,
        ready=model.ready,
        problem=model.problem,
    )


class OrchestratorService(orchestrator_service_pb2_grpc.OrchestratorServiceServicer):
    """Runs plans step by step on Triton and serves the registry."""

    def __init__(
        self,
        registry: TritonRegistry,
        triton: TritonPool,
        events: EventSender,
        *,
        default_timeout_seconds: float,
        admin_token: str,
    ) -> None:
        self._registry = registry
        self._triton = triton
        self._events = events
        self._default_timeout = default_timeout_seconds
        self._admin_token = admin_token

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

    def _validate(self, request: orchestrator_service_pb2.ExecuteRequest) -> list[RegisteredModel | None]:
        """Checks the request; returns each step's model, or None for a step whose model left routing."""
        plan = request.plan
        if not plan.steps:
            raise InvalidArgument("plan.steps must hold at least one step")
        if plan.strategy == common_pb2.STRATEGY_SINGLE and len(plan.steps) != 1:
            raise InvalidArgument(f"plan.steps of a STRATEGY_SINGLE plan must hold one step, not {len(plan.steps)}")
        if plan.strategy not in (common_pb2.STRATEGY_CASCADE, common_pb2.STRATEGY_SINGLE):
            raise InvalidArgument(f"plan.strategy {common_pb2.Strategy.Name(plan.strategy)} is not supported")
        if not request.inputs:
            raise InvalidArgument("inputs must hold at least one tensor")
        for index, tensor in enumerate(request.inputs):
            validate_tensor(tensor, f"inputs[{index}]")
        models: list[RegisteredModel | None] = []
        problems = []
        for index, step in enumerate(plan.steps):
            if not 0.0 <= step.accept_threshold <= 1.0:
                raise InvalidArgument(f"plan.steps[{index}].accept_threshold {step.accept_threshold} is outside [0, 1]")
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
        plan = request.plan
        strategy = common_pb2.Strategy.Name(plan.strategy)
        response = orchestrator_service_pb2.ExecuteResponse()
        last_runnable = max(index for index, model in enumerate(models) if model is not None)
        for index, (step, model) in enumerate(zip(plan.steps, models, strict=True)):
            if model is None:
                response.steps.append(
                    common_pb2.EscalationStep(
                        index=index,
                        model=step.model,
                        tier=step.tier,
                        threshold=step.accept_threshold,
                        decision=common_pb2.DECISION_SKIPPED,
                        reason=f"model {step.model.name} left routing after the plan was made",
                    )
                )
                continue
            is_last = index == last_runnable
            with TRACER.start_as_current_span(
                "inferscale.escalation_step",
                attributes={
                    telemetry.ATTR_STRATEGY: strategy,
                    telemetry.ATTR_TASK: plan.task,
                    telemetry.ATTR_STEP_INDEX: index,
                    telemetry.ATTR_TIER: model.tier,
                    telemetry.ATTR_MODEL: model.name,
                    telemetry.ATTR_THRESHOLD: step.accept_threshold,
                    telemetry.ATTR_CACHE_LEVEL: common_pb2.CacheLevel.Name(common_pb2.CACHE_LEVEL_UNSPECIFIED),
                },
            ) as span:
                started = time.perf_counter()
                remaining = context.time_remaining()
                # Triton's latest ready version answers: a plan built from a registry a moment
                # old must not fail on a version that has just been replaced. The step reports
                # the version that really ran, and the cache keys on it.
                result = await self._triton.infer(
                    model.name,
                    0,
                    request.inputs,
                    timeout_seconds=remaining if remaining is not None else self._default_timeout,
                )
                latency_ms = (time.perf_counter() - started) * 1000
                output = next((t for t in result.outputs if t.name == model.output_name), None)
                if output is None:
                    raise ModelFailed(
                        f"model {model.name} returned no output named {model.output_name!r}, "
                        "which its config's inferscale.output declares"
                    )
                try:
                    answer = read_class_probabilities(to_numpy(output))
                except ValueError as error:
                    raise ModelFailed(f"model {model.name}'s output {model.output_name!r} cannot be read: {error}") from None
                decision = decide(answer.confidence, step.accept_threshold, is_last=is_last)
                decision_enum = common_pb2.DECISION_ACCEPT if decision.accept else common_pb2.DECISION_ESCALATE
                span.set_attributes(
                    {
                        telemetry.ATTR_MODEL_VERSION: result.model_version,
                        telemetry.ATTR_CONFIDENCE: answer.confidence,
                        telemetry.ATTR_DECISION: common_pb2.Decision.Name(decision_enum),
                        telemetry.ATTR_REASON: decision.reason,
                        telemetry.ATTR_COST: model.cost,
                    }
                )
            reported = common_pb2.EscalationStep(
                index=index,
                model=common_pb2.ModelRef(name=model.name, version=result.model_version),
                tier=model.tier,
                answer=common_pb2.Answer(label=answer.label, confidence=answer.confidence),
                threshold=step.accept_threshold,
                decision=decision_enum,
                reason=decision.reason,
                latency_ms=latency_ms,
                cost=model.cost,
            )
            response.steps.append(reported)
            response.total_cost += model.cost
            self._events.emit(
                monitor_service_pb2.Event(
                    request_id=request.request_id,
                    step=monitor_service_pb2.StepEvent(task=plan.task, strategy=plan.strategy, step=reported),
                )
            )
            if decision.accept:
                response.outputs.extend(result.outputs)
                response.answer.CopyFrom(reported.answer)
                break
        return response

    @grpc_errors
    async def LoadModel(
        self, request: orchestrator_service_pb2.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.LoadModelResponse:
        require_bearer_token(context.invocation_metadata(), self._admin_token, what="LoadModel")
        if not request.model_name:
            raise InvalidArgument("model_name must name a model of the Triton repository")
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
        require_bearer_token(context.invocation_metadata(), self._admin_token, what="UnloadModel")
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
