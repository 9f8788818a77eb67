"""Starts the orchestrator: config, telemetry, Triton client, registry, gRPC server (``python -m services.orchestrator.server``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from inferscale.auth import bearer_metadata, process_credentials
from inferscale.errors import InferScaleError
from inferscale.events import EventSender
from inferscale.rpc import (
    RunningServer,
    configure_logging,
    open_channel,
    serve_until_stopped,
    service_stub,
    start_server,
)
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.model_cache import ModelOutputCache
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.service import OrchestratorService
from services.orchestrator.triton_pool import TritonPool

LOG = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_service_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


@dataclass
class Orchestrator:
    """An orchestrator's parts, its own gRPC server when it runs as a service, and what it must close on stop."""

    servicer: OrchestratorService
    triton: TritonPool
    registry: TritonRegistry
    events: EventSender
    cache_channel: grpc.aio.Channel | None
    model_cache: ModelOutputCache
    running: RunningServer | None = None

    async def close(self) -> None:
        """Stops the background work, lets the cache stores in flight finish and closes the channels."""
        await self.registry.stop()
        await self.model_cache.close()
        await self.events.close()
        await self.triton.close()
        if self.cache_channel is not None:
            await self.cache_channel.close()


def cache_invalidator(
    cache: cache_service_pb2_grpc.CacheServiceStub | None, admin_token: str
) -> Callable[[RegisteredModel], Awaitable[int]]:
    """Returns the registry's callback that removes what a retired model version produced from the cache.

    Invalidation is an admin call; an orchestrator without the admin token leaves the entries to
    expire, and the router's version check keeps them from being served meanwhile.
    """

    async def invalidate(model: RegisteredModel) -> int:
        if cache is None:
            return 0
        try:
            reply = await cache.Invalidate(
                cache_service_pb2.InvalidateRequest(model_name=model.name, model_version=model.version),
                timeout=2.0,
                metadata=bearer_metadata(admin_token),
            )
        except grpc.aio.AioRpcError as error:
            # The router also refuses entries whose producer versions are not current, so a
            # missed invalidation costs memory, never a stale answer.
            LOG.warning("cache invalidation of %s v%d failed: %s", model.name, model.version, error.code().name)
            return 0
        return int(reply.removed)

    return invalidate


async def build_orchestrator(config: OrchestratorConfig) -> Orchestrator:
    """Builds the orchestrator's parts, without a server: the registry is read from Triton first.

    A router that embeds the orchestrator (INFERSCALE_EMBED_ORCHESTRATOR) calls this itself.
    """
    triton = TritonPool(
        config.triton_urls, health_interval_seconds=config.triton_health_seconds, repository_key=config.triton_repository_key
    )
    triton.start()
    cache_channel = open_channel(config.cache_address) if config.cache_address else None
    cache = service_stub(cache_service_pb2_grpc.CacheServiceStub, cache_channel) if cache_channel else None
    registry = TritonRegistry(
        triton, config.registry_refresh_seconds, on_retired=cache_invalidator(cache, config.admin_token)
    )
    try:
        await registry.refresh()
    except InferScaleError as error:
        # Triton may come up after the orchestrator; the background refresh keeps trying.
        LOG.warning("Triton not reachable yet, serving an empty registry: %s", error)
    registry.start()
    events = EventSender(config.monitor_address, "orchestrator")
    events.start()
    model_cache = ModelOutputCache(
        cache, events, timeout_seconds=config.cache_timeout_seconds, min_cost=config.model_cache_min_cost
    )
    servicer = OrchestratorService(
        registry,
        triton,
        events,
        model_cache,
        default_timeout_seconds=config.triton_timeout_seconds,
        min_gain_per_cost=config.min_gain_per_cost,
    )
    return Orchestrator(servicer, triton, registry, events, cache_channel, model_cache)


async def create_server(config: OrchestratorConfig) -> Orchestrator:
    """Builds and starts the orchestrator as a service of its own."""
    orchestrator = await build_orchestrator(config)
    orchestrator.running = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server(orchestrator.servicer, server),
        credentials=process_credentials(),
    )
    return orchestrator


async def serve() -> None:
    """Runs the orchestrator until SIGTERM."""
    config = OrchestratorConfig.from_env()
    provider = setup_telemetry("orchestrator")
    orchestrator = await create_server(config)
    assert orchestrator.running is not None
    await serve_until_stopped(
        orchestrator.running, grace_seconds=config.shutdown_grace_seconds, on_stop=orchestrator.close
    )
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("orchestrator")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
