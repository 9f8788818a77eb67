"""The in-process orchestrator stub, pure: deadlines and aborts become the errors a remote call raises."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from inferscale.errors import refuse
from inferscale.v1 import orchestrator_service_pb2
from services.router.embedded import InProcessOrchestrator


def test_an_in_process_call_keeps_the_deadline_and_turns_a_refusal_into_the_rpc_error() -> None:
    remaining: list[float | None] = []

    class Servicer:
        async def Execute(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            remaining.append(context.time_remaining())
            await asyncio.Event().wait()  # never answers: only the deadline ends the call

        async def ListModels(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            refuse(context, grpc.StatusCode.PERMISSION_DENIED, "no")  # as grpc_errors does

    local = InProcessOrchestrator(Servicer())  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(local.Execute(orchestrator_service_pb2.ExecuteRequest(), timeout=0.2))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler saw the caller's deadline, however long it took to be called.
    assert remaining[0] is not None and 0 <= remaining[0] <= 0.2
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(local.ListModels(orchestrator_service_pb2.ListModelsRequest(), timeout=1))
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "no")
