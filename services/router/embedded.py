"""The orchestrator inside the router's process: the request's way without the router-orchestrator hop.

With ``INFERSCALE_EMBED_ORCHESTRATOR=on`` the router builds the orchestrator itself
(``services.orchestrator.server.build_orchestrator``, from the orchestrator's own settings) and
calls its handlers through ``InProcessOrchestrator``, which has the methods of the
orchestrator's stub that the router uses. Requests and responses are the same protobuf messages,
handed over instead of serialized, sent and parsed twice each way. A handler's error reaches the
router as the ``grpc.aio.AioRpcError`` a remote call would raise, with the same code and details,
and the caller's deadline holds as it would over gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from inferscale.v1 import orchestrator_service_pb2
from services.orchestrator.service import OrchestratorService

Reply = TypeVar("Reply")


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class InProcessContext:
    """What the orchestrator's handlers use of a ServicerContext, for a call made in-process."""

    def __init__(self, timeout_seconds: float | None, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self._deadline = time.monotonic() + timeout_seconds if timeout_seconds is not None else None
        self._metadata = tuple(metadata)
        # What a handler refused the call with (inferscale.errors.refuse), raised once it returns.
        self.code = grpc.StatusCode.OK
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class InProcessOrchestrator:
    """The orchestrator's Execute, Embed and ListModels, called in this process."""

    def __init__(self, servicer: OrchestratorService) -> None:
        self._servicer = servicer

    async def _call(self, handler: Callable[[Any, InProcessContext], Awaitable[Reply]], request: Any, timeout: float | None) -> Reply:
        try:
            async with asyncio.timeout(timeout):
                context = InProcessContext(timeout)
                reply = await handler(request, context)
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        if context.code != grpc.StatusCode.OK:
            raise rpc_error(context.code, context.details)
        return reply

    async def Execute(  # noqa: N802 - the stub's method name
        self, request: orchestrator_service_pb2.ExecuteRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.ExecuteResponse:
        return await self._call(self._servicer.Execute, request, timeout)

    async def Embed(  # noqa: N802
        self, request: orchestrator_service_pb2.EmbedRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.EmbedResponse:
        return await self._call(self._servicer.Embed, request, timeout)

    async def ListModels(  # noqa: N802
        self, request: orchestrator_service_pb2.ListModelsRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.ListModelsResponse:
        return await self._call(self._servicer.ListModels, request, timeout)
