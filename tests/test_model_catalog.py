"""The router's model catalog: concurrent requests share one refresh of the orchestrator's model list."""

from __future__ import annotations

import asyncio

from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.router.service import ModelCatalog


class CountingOrchestrator:
    """Answers ListModels slowly and counts the calls (the catalog's only use of the orchestrator)."""

    def __init__(self) -> None:
        self.calls = 0

    async def ListModels(self, request: orchestrator_service_pb2.ListModelsRequest, timeout: float):  # noqa: N802
        self.calls += 1
        await asyncio.sleep(0.05)
        return orchestrator_service_pb2.ListModelsResponse(
            models=[common_pb2.ModelInfo(model=common_pb2.ModelRef(name="m", version=1), task="digits", ready=True)]
        )


def test_requests_arriving_together_share_one_refresh() -> None:
    orchestrator = CountingOrchestrator()
    catalog = ModelCatalog(orchestrator, ttl_seconds=60)  # type: ignore[arg-type]

    async def many() -> list[list[common_pb2.ModelInfo]]:
        return await asyncio.gather(*(catalog.routable("digits") for _ in range(20)))

    answers = asyncio.run(many())
    assert orchestrator.calls == 1
    assert all([m.model.name for m in answer] == ["m"] for answer in answers)
