"""The in-process orchestrator stub, pure: deadlines and aborts become the errors a remote call raises."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from inferscale.v1 import orchestrator_service_pb2
from services.router.embedded import InProcessOrchestrator


def test_an_in_process_call_keeps_the_deadline_and_turns_an_abort_into_the_rpc_error() -> None:
    class Servicer:
        async def Execute(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            assert 0 < context.time_remaining() <= 0.2
            await asyncio.sleep(5)

        async def ListModels(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")

    local = InProcessOrchestrator(Servicer())  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(local.Execute(orchestrator_service_pb2.ExecuteRequest(), timeout=0.2))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(local.ListModels(orchestrator_service_pb2.ListModelsRequest(), timeout=1))
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, "no")
