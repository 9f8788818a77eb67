"""An async Triton client that passes InferScale's tensors to Triton's v2 gRPC protocol as they are.

Built on tritonclient's generated stub rather than its numpy-level API, so that a tensor's raw
bytes go from the caller to Triton without being decoded and re-encoded. The channel is an
instrumented grpc.aio channel: each call is a client span and carries the W3C ``traceparent``
that makes Triton's own spans join the caller's trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from inferscale.errors import (
    DeadlineExceeded,
    InferScaleError,
    InvalidArgument,
    ModelFailed,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from inferscale.models.llm import MODEL_FAULT_PREFIX
from inferscale.rpc import open_channel
from inferscale.v1 import common_pb2


@dataclass(frozen=True)
class RepositoryEntry:
    """One line of Triton's repository index."""

    name: str
    version: str
    state: str
    reason: str


@dataclass(frozen=True)
class InferResult:
    """A model's outputs and the version that produced them."""

    outputs: list[common_pb2.InferTensor]
    model_version: int


# INFERSCALE_TRITON_REPOSITORY_KEY: the key that Triton's repository API (index, load, unload)
# asks for. The launcher restricts that API to callers presenting it (--grpc-restricted-protocol,
# --http-restricted-api); the orchestrator presents it. Unset: the orchestrator presents none.
REPOSITORY_KEY_VARIABLE = "INFERSCALE_TRITON_REPOSITORY_KEY"
# The header the key travels in; over gRPC, Triton expects it prefixed with "triton-grpc-protocol-".
REPOSITORY_KEY_HEADER = "inferscale-repository-key"
# How Triton refuses a restricted call without the key (as UNAVAILABLE, which is no outage).
RESTRICTED = "is restricted, expecting header"

# How Triton's python backend reports a model whose stub process died: it fails that call and
# starts a new stub, so the next call succeeds (measured on Triton 2.51 after killing a stub).
STUB_UNHEALTHY = "is not healthy"


# ModelStreamInfer's request and response parameters for a decoupled model's last response.
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"
FINAL_RESPONSE = "triton_final_response"


def _stream_error(message: str, what: str) -> InferScaleError:
    """A model's error on a stream arrives as a message without a status code: the model refused
    the request (its input is at fault) unless it says it failed itself."""
    message = message.strip()
    if STUB_UNHEALTHY in message:
        return ModelRestarting(f"Triton {what} failed: {message}")
    if "unknown model" in message or "is not found" in message:
        return NotFound(f"Triton {what}: {message}")
    if message.startswith(MODEL_FAULT_PREFIX):
        return ModelFailed(f"Triton {what} failed: {message}")
    return InvalidArgument(f"Triton {what}: {message}")


class ModelRestarting(ModelFailed):
    """The model's backend process died and Triton is restarting it: the call may be retried."""


def _translate(error: grpc.aio.AioRpcError, what: str) -> InferScaleError:
    code = error.code()
    # Triton ends some messages with a space ("... Expected [-1,64], got [8,8]. "): dropped here,
    # since a status message framed in whitespace is lost on its way to some clients (grpc_errors).
    details = (error.details() or "").strip() or code.name
    if RESTRICTED in details:
        return PermissionDenied(f"Triton refused {what}: its repository API needs the key in {REPOSITORY_KEY_VARIABLE} ({details})")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        # The caller's time ran out, not the server: no replica leaves the rotation for it.
        return DeadlineExceeded(f"Triton {what} did not answer within the deadline")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return Unavailable(f"Triton {what}: {details}")
    if code == grpc.StatusCode.NOT_FOUND or "unknown model" in details or "is not found" in details:
        return NotFound(f"Triton {what}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(f"Triton {what}: {details}")
    if code == grpc.StatusCode.INTERNAL and STUB_UNHEALTHY in details:
        return ModelRestarting(f"Triton {what} failed: {details}")
    if code == grpc.StatusCode.INTERNAL:
        # The server answered: the model failed, not the endpoint; failing over would not help.
        return ModelFailed(f"Triton {what} failed: {details}")
    return Unavailable(f"Triton {what} failed with {code.name}: {details}")


class TritonClient:
    """Calls one Triton server over a reused gRPC channel."""

    def __init__(self, url: str, *, repository_key: str = "") -> None:
        self.url = url
        self._repository_metadata = ((f"triton-grpc-protocol-{REPOSITORY_KEY_HEADER}", repository_key),) if repository_key else ()
        self._channel = open_channel(url, service_tls=False)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()

    async def infer(
        self,
        model_name: str,
        model_version: int,
        inputs: Sequence[common_pb2.InferTensor],
        *,
        timeout_seconds: float,
    ) -> InferResult:
        """Runs one inference; ``model_version`` 0 lets Triton pick the latest ready version."""
        request = service_pb2.ModelInferRequest(
            model_name=model_name,
            model_version=str(model_version) if model_version else "",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(
                    name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
                )
                for tensor in inputs
            ],
            raw_input_contents=[tensor.raw_contents for tensor in inputs],
        )
        try:
            reply = await self._stub.ModelInfer(request, timeout=timeout_seconds)
        except grpc.aio.AioRpcError as error:
            raise _translate(error, f"inference on {model_name}") from error
        outputs = [
            common_pb2.InferTensor(
                name=output.name, datatype=output.datatype, shape=output.shape, raw_contents=raw
            )
            for output, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)
        ]
        return InferResult(outputs=outputs, model_version=int(reply.model_version or 0))

    async def stream_infer(
        self,
        model_name: str,
        model_version: int,
        inputs: Sequence[common_pb2.InferTensor],
        *,
        timeout_seconds: float,
    ) -> AsyncIterator[InferResult]:
        """Runs one request on a decoupled model over ModelStreamInfer; yields each response as it comes.

        Ends after the response that carries Triton's final flag. Leaving the iteration early
        (a cancelled caller, an expired deadline) cancels the gRPC call, and Triton cancels the
        request: a generating model stops at its next token.
        """
        request = service_pb2.ModelInferRequest(
            model_name=model_name,
            model_version=str(model_version) if model_version else "",
            inputs=[
                service_pb2.ModelInferRequest.InferInputTensor(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                for tensor in inputs
            ],
            raw_input_contents=[tensor.raw_contents for tensor in inputs],
        )
        # A model may end with a final flag alone, without outputs; Triton relays it only when asked.
        request.parameters[EMPTY_FINAL_RESPONSE].bool_param = True
        call = self._stub.ModelStreamInfer(iter([request]), timeout=timeout_seconds)
        what = f"streamed inference on {model_name}"
        try:
            async for reply in call:
                if reply.error_message:
                    raise _stream_error(reply.error_message, what)
                response = reply.infer_response
                final = response.parameters[FINAL_RESPONSE].bool_param if FINAL_RESPONSE in response.parameters else False
                if response.outputs or not final:
                    yield InferResult(
                        outputs=[
                            common_pb2.InferTensor(name=output.name, datatype=output.datatype, shape=output.shape, raw_contents=raw)
                            for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)
                        ],
                        model_version=int(response.model_version or 0),
                    )
                if final:
                    return
        except grpc.aio.AioRpcError as error:
            raise _translate(error, what) from error
        finally:
            call.cancel()
        raise ModelFailed(f"Triton {what} ended without a final response")

    async def repository_index(self, *, timeout_seconds: float = 5.0) -> list[RepositoryEntry]:
        """Returns every model of the repository with its state (READY, UNAVAILABLE, LOADING…)."""
        try:
            reply = await self._stub.RepositoryIndex(
                service_pb2.RepositoryIndexRequest(), timeout=timeout_seconds, metadata=self._repository_metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error, "repository index") from error
        return [
            RepositoryEntry(name=m.name, version=m.version, state=m.state, reason=m.reason)
            for m in reply.models
        ]

    async def model_config(self, name: str, *, timeout_seconds: float = 5.0) -> model_config_pb2.ModelConfig:
        """Returns the configuration Triton loaded for a model."""
        try:
            reply = await self._stub.ModelConfig(
                service_pb2.ModelConfigRequest(name=name), timeout=timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error, f"config of {name}") from error
        return reply.config

    async def server_live(self, *, timeout_seconds: float = 1.0) -> bool:
        """Returns whether the server answers and reports itself live; False when it cannot be reached.

        Liveness, not readiness: Triton's strict readiness turns false while any one model
        reloads, which says nothing about the other models this server can serve.
        """
        try:
            reply = await self._stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_seconds)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.live)

    async def load_model(self, name: str, *, timeout_seconds: float = 120.0) -> None:
        """Loads (or reloads) a model through Triton's repository API; needs explicit model control."""
        try:
            await self._stub.RepositoryModelLoad(
                service_pb2.RepositoryModelLoadRequest(model_name=name), timeout=timeout_seconds, metadata=self._repository_metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error, f"load of {name}") from error

    async def unload_model(self, name: str, *, timeout_seconds: float = 60.0) -> None:
        """Unloads a model through Triton's repository API; needs explicit model control."""
        try:
            await self._stub.RepositoryModelUnload(
                service_pb2.RepositoryModelUnloadRequest(model_name=name), timeout=timeout_seconds, metadata=self._repository_metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error, f"unload of {name}") from error
