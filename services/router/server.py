"""Starts the router: config, telemetry, channels to its peers, gRPC server (``python -m services.router.server``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

from inferscale.auth import process_credentials
from inferscale.events import EventSender
from inferscale.rpc import (
    RunningServer,
    configure_logging,
    open_channel,
    serve_until_stopped,
    service_stub,
    start_server,
    stop_background,
)
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import (
    cache_service_pb2_grpc,
    monitor_service_pb2_grpc,
    orchestrator_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.server import Orchestrator, build_orchestrator
from services.router.config import RouterConfig
from services.router.embedded import InProcessOrchestrator
from services.router.service import ModelCatalog, OrchestratorClient, PolicyWatcher, RouterService

SERVICE_NAME = router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


@dataclass
class Router:
    """A running router and what it must close on stop."""

    running: RunningServer
    servicer: RouterService
    events: EventSender
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    # The orchestrator running in this process, with INFERSCALE_EMBED_ORCHESTRATOR on.
    embedded: Orchestrator | None = None

    async def close(self) -> None:
        """Stops the background work, lets the cache stores in flight finish, flushes events and closes the channels."""
        for task in self.background:
            await stop_background(task)
        await self.servicer.close()
        await self.events.close()
        for channel in self.channels:
            await channel.close()
        if self.embedded is not None:
            await self.embedded.close()


async def create_server(config: RouterConfig) -> Router:
    """Builds and starts the router."""
    # First: a router that would serve anyone by a missing setting does not start at all.
    credentials = process_credentials(serves_clients=True)
    channels = []
    embedded = None
    orchestrator: OrchestratorClient
    if config.embed_orchestrator:
        embedded = await build_orchestrator(OrchestratorConfig.from_env())
        orchestrator = InProcessOrchestrator(embedded.servicer)
    else:
        orchestrator_channel = open_channel(config.orchestrator_address)
        channels.append(orchestrator_channel)
        orchestrator = service_stub(orchestrator_service_pb2_grpc.OrchestratorServiceStub, orchestrator_channel)
    cache = None
    if config.cache_address:
        cache_channel = open_channel(config.cache_address)
        channels.append(cache_channel)
        cache = service_stub(cache_service_pb2_grpc.CacheServiceStub, cache_channel)
    events = EventSender(config.monitor_address, "router")
    events.start()
    catalog = ModelCatalog(orchestrator, config.catalog_ttl_seconds)
    monitor = None
    if config.monitor_address:
        monitor_channel = open_channel(config.monitor_address)
        channels.append(monitor_channel)
        monitor = service_stub(monitor_service_pb2_grpc.MonitorServiceStub, monitor_channel)
    policies = PolicyWatcher(monitor, catalog, config.policy_refresh_seconds)
    watcher = asyncio.create_task(policies.run())
    servicer = RouterService(
        orchestrator,
        cache,
        events,
        catalog,
        policies,
        default_threshold=config.confidence_threshold,
        default_escalate_threshold=config.escalate_threshold,
        cache_timeout_seconds=config.cache_timeout_seconds,
        request_timeout_seconds=config.request_timeout_seconds,
        semantic_verify=config.semantic_verify,
        semantic_audit_rate=config.semantic_audit_rate,
        exploration_rate=config.exploration_rate,
        search_max_calls=config.search_max_calls,
        skip_complexity=config.skip_complexity,
        finite_inputs=config.finite_inputs,
        text_defaults=config.text,
    )

    # The router's port is the public one: it serves Infer and InferStream alone. An embedded
    # orchestrator's own RPCs (Execute and ExecuteStream, which would bypass client tokens, and the
    # admin ones) are served nowhere.
    running = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server),
        credentials=credentials,
        max_concurrent_rpcs=config.max_in_flight,
    )
    return Router(running, servicer, events, channels, [watcher], embedded)


async def serve() -> None:
    """Runs the router until SIGTERM."""
    config = RouterConfig.from_env()
    provider = setup_telemetry("router")
    router = await create_server(config)
    await serve_until_stopped(router.running, grace_seconds=config.shutdown_grace_seconds, on_stop=router.close)
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("router")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
