"""The orchestrator inside the router's process: the request's way without the router-orchestrator hop.

With ``INFERSCALE_EMBED_ORCHESTRATOR=on`` the router builds the orchestrator itself
(``services.orchestrator.server.build_orchestrator``, from the orchestrator's own settings) and
calls its handlers through ``InProcessOrchestrator``, which has the methods of the
orchestrator's stub that the router uses. Requests and responses are the same protobuf messages,
handed over instead of serialized, sent and parsed twice each way. A handler's error reaches the
router as the ``grpc.aio.AioRpcError`` a remote call would raise, with the same code and details,
and the caller's deadline holds as it would over gRPC. A streamed call (ExecuteStream) runs its
handler in a task of its own, as a served call does, so that cancelling it cancels what the
handler awaits (a generation on Triton) at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
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


# What a streamed handler's task passes on when the handler has ended without an error.
_END = object()


class InProcessStream:
    """A streamed in-process call, used as grpc.aio's call object is: iterated for the handler's
    replies, and ended early with ``cancel``.

    The handler runs in a task of its own and hands its replies over one at a time, so that it
    runs ahead of its reader by one reply at most, as a call's flow control would let it.
    """

    def __init__(
        self,
        handler: Callable[[Any, InProcessContext], AsyncIterator[Any]],
        request: Any,
        timeout: float | None,
    ) -> None:
        self._replies: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._ended = False
        self._task = asyncio.get_running_loop().create_task(self._pump(handler, request, timeout))

    async def _pump(
        self, handler: Callable[[Any, InProcessContext], AsyncIterator[Any]], request: Any, timeout: float | None
    ) -> None:
        """Runs the handler, passing on each reply, then how it ended: the end, or the error to raise."""
        try:
            async with asyncio.timeout(timeout):
                context = InProcessContext(timeout)
                replies = handler(request, context)
                assert isinstance(replies, AsyncGenerator), "a streaming handler is an async generator"
                # Closed however the run ends, a cancellation while a reply waits for its reader
                # included: the handler's cleanup (cancelling its Triton calls) runs at once.
                async with aclosing(replies):
                    async for reply in replies:
                        await self._replies.put(reply)
        except TimeoutError:
            await self._replies.put(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
        except Exception as error:  # noqa: BLE001 - the reader raises it, as it would a call's own failure
            await self._replies.put(error)
        else:
            ended = rpc_error(context.code, context.details) if context.code != grpc.StatusCode.OK else _END
            await self._replies.put(ended)

    def __aiter__(self) -> InProcessStream:
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        try:
            reply = await self._replies.get()
        except asyncio.CancelledError:
            # As a grpc.aio call whose reader is cancelled: the call ends with it.
            self.cancel()
            raise
        if reply is _END or isinstance(reply, Exception):
            self._ended = True
        if reply is _END:
            raise StopAsyncIteration
        if isinstance(reply, Exception):
            raise reply
        return reply

    def cancel(self) -> bool:
        """Cancels the handler where it waits; False when it had already ended."""
        return self._task.cancel()


class InProcessOrchestrator:
    """The orchestrator's Execute, ExecuteStream, Embed and ListModels, called in this process."""

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

    async def Execute(
        self, request: orchestrator_service_pb2.ExecuteRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.ExecuteResponse:
        return await self._call(self._servicer.Execute, request, timeout)

    def ExecuteStream(
        self, request: orchestrator_service_pb2.ExecuteStreamRequest, timeout: float | None = None
    ) -> InProcessStream:
        return InProcessStream(self._servicer.ExecuteStream, request, timeout)

    async def Embed(
        self, request: orchestrator_service_pb2.EmbedRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.EmbedResponse:
        return await self._call(self._servicer.Embed, request, timeout)

    async def ListModels(
        self, request: orchestrator_service_pb2.ListModelsRequest, timeout: float | None = None
    ) -> orchestrator_service_pb2.ListModelsResponse:
        return await self._call(self._servicer.ListModels, request, timeout)
