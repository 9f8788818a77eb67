"""The orchestrator's RPC handlers: protos in, a plan run by its strategy on Triton, protos out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from inferscale import telemetry
from inferscale.errors import (
    FailedPrecondition,
    InferScaleError,
    InvalidArgument,
    ModelFailed,
    NotFound,
    grpc_errors,
    grpc_stream_errors,
)
from inferscale.events import EventSender
from inferscale.tensors import to_numpy, validate_tensor
from inferscale.v1 import common_pb2, orchestrator_service_pb2, orchestrator_service_pb2_grpc
from services.orchestrator.model_cache import L2, ModelOutputCache, model_output_key
from services.orchestrator.ranking import alternatives
from services.orchestrator.registry import GRID, ROLE_EMBEDDING, RegisteredModel
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.step_runner import TRACER, Execution, StepRunner
from services.orchestrator.strategies import STRATEGIES
from services.orchestrator.triton_pool import TritonPool
from services.orchestrator.validation import validate


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
        cost_per_input_token=model.cost_per_input_token,
        cost_per_output_token=model.cost_per_output_token,
        answer_extraction=model.answer_extraction,
        prompt_format=model.prompt_format,
        answer_check=model.answer_check,
        role=model.role,
    )


def _attach_tokens(execution: Execution) -> None:
    """Gives a text answer its tokens: those of the step the strategy chose, else of the accepted step."""
    response = execution.response
    position = execution.answer_position
    if position is None:
        position = next((i for i, s in enumerate(response.steps) if s.decision == common_pb2.DECISION_ACCEPT), None)
    text = execution.texts.get(position) if position is not None else None
    if text is not None:
        response.answer.text = text.generated.text
        response.answer.tokens.extend(text.tokens(position))


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
        self._registry = registry
        self._triton = triton
        self._model_cache = model_cache
        self._runner = StepRunner(
            registry,
            triton,
            events,
            model_cache,
            default_timeout_seconds=default_timeout_seconds,
            min_gain_per_cost=min_gain_per_cost,
        )

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
                result = await self._triton.infer(model.name, 0, inputs, timeout_seconds=self._runner.timeout(context))
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

    @grpc_errors
    async def Execute(
        self, request: orchestrator_service_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_service_pb2.ExecuteResponse:
        return await self._execute(Execution(request, orchestrator_service_pb2.ExecuteResponse(), context.time_remaining))

    @grpc_stream_errors
    async def ExecuteStream(
        self, request: orchestrator_service_pb2.ExecuteStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_service_pb2.ExecuteStreamResponse]:
        """Runs the plan as Execute does, passing on each step's start, tokens and decision as they happen."""
        events: asyncio.Queue[orchestrator_service_pb2.ExecuteStreamResponse | None] = asyncio.Queue()
        execution = Execution(
            request.request, orchestrator_service_pb2.ExecuteResponse(), context.time_remaining, sink=events.put_nowait
        )

        async def run() -> orchestrator_service_pb2.ExecuteResponse:
            try:
                return await self._execute(execution)
            finally:
                events.put_nowait(None)

        running = asyncio.create_task(run())
        try:
            while (event := await events.get()) is not None:
                yield event
            response = await running
        finally:
            # A client that went away cancels the plan, and with it the generation on Triton.
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        yield orchestrator_service_pb2.ExecuteStreamResponse(response=response)

    async def _execute(self, execution: Execution) -> orchestrator_service_pb2.ExecuteResponse:
        request = execution.request
        models = validate(request, self._registry.snapshot, STRATEGIES.keys())
        response = await STRATEGIES[request.plan.strategy](self._runner, execution, models)
        if any(model is not None and model.answer_kind == GRID for model in models):
            # Grids are scored with several attempts: the next best distinct answers go along.
            response.alternatives.extend(alternatives(request.plan, response.answer.label, response.steps))
        if execution.texts:
            _attach_tokens(execution)
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
