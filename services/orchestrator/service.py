"""The orchestrator's RPC handlers: protos in, plan execution on Triton, protos out."""

from __future__ import annotations

import time

import grpc
from opentelemetry import trace

from inferscale import telemetry
from inferscale.errors import InvalidArgument, NotFound, grpc_errors
from inferscale.events import EventSender
from inferscale.tensors import to_numpy, validate_tensor
from inferscale.triton.client import TritonClient
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)
from services.orchestrator.escalation import decide, read_class_probabilities
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.registry_source import TritonRegistry

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
        triton: TritonClient,
        events: EventSender,
        *,
        default_timeout_seconds: float,
    ) -> None:
        self._registry = registry
        self._triton = triton
        self._events = events
        self._default_timeout = default_timeout_seconds

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

    def _validate(self, request: orchestrator_service_pb2.ExecuteRequest) -> list[RegisteredModel]:
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
        models = []
        for index, step in enumerate(plan.steps):
            model = self._registry.snapshot.get(step.model.name)
            if model is None:
                raise NotFound(f"plan.steps[{index}].model {step.model.name!r} is not in the registry")
            if not model.routable:
                raise NotFound(f"plan.steps[{index}].model {step.model.name!r} cannot be routed to: {model.problem}")
            if not 0.0 <= step.accept_threshold <= 1.0:
                raise InvalidArgument(f"plan.steps[{index}].accept_threshold {step.accept_threshold} is outside [0, 1]")
            models.append(model)
        return models

    @grpc_errors
    async def Execute(
        self, request: orchestrator_service_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.ExecuteResponse:
        models = self._validate(request)
        plan = request.plan
        strategy = common_pb2.Strategy.Name(plan.strategy)
        response = orchestrator_service_pb2.ExecuteResponse()
        for index, (step, model) in enumerate(zip(plan.steps, models, strict=True)):
            is_last = index == len(plan.steps) - 1
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
                result = await self._triton.infer(
                    model.name,
                    step.model.version,
                    request.inputs,
                    timeout_seconds=remaining if remaining is not None else self._default_timeout,
                )
                latency_ms = (time.perf_counter() - started) * 1000
                output = next((t for t in result.outputs if t.name == model.output_name), None)
                if output is None:
                    raise NotFound(f"model {model.name} returned no output named {model.output_name!r}")
                answer = read_class_probabilities(to_numpy(output))
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
