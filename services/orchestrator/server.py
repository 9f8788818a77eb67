"""Starts the orchestrator: config, telemetry, Triton client, registry, gRPC server (``python -m services.orchestrator.server``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from inferscale.errors import InferScaleError
from inferscale.events import EventSender
from inferscale.rpc import RunningServer, configure_logging, serve_until_stopped, start_server
from inferscale.telemetry import setup_telemetry
from inferscale.triton.client import TritonClient
from inferscale.v1 import orchestrator_service_pb2, orchestrator_service_pb2_grpc
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.registry_source import TritonRegistry
from services.orchestrator.service import OrchestratorService

LOG = logging.getLogger(__name__)

SERVICE_NAME = orchestrator_service_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


@dataclass
class Orchestrator:
    """A running orchestrator and what it must close on stop."""

    running: RunningServer
    triton: TritonClient
    registry: TritonRegistry
    events: EventSender

    async def close(self) -> None:
        """Stops the background work and closes the channels."""
        await self.registry.stop()
        await self.events.close()
        await self.triton.close()


async def create_server(config: OrchestratorConfig) -> Orchestrator:
    """Builds and starts the orchestrator; the registry is read from Triton before it serves."""
    triton = TritonClient(config.triton_url)
    registry = TritonRegistry(triton, config.registry_refresh_seconds)
    try:
        await registry.refresh()
    except InferScaleError as error:
        # Triton may come up after the orchestrator; the background refresh keeps trying.
        LOG.warning("Triton not reachable yet, serving an empty registry: %s", error)
    registry.start()
    events = EventSender(config.monitor_address, "orchestrator")
    events.start()
    servicer = OrchestratorService(
        registry, triton, events, default_timeout_seconds=config.triton_timeout_seconds
    )
    running = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: orchestrator_service_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
    )
    return Orchestrator(running, triton, registry, events)


async def serve() -> None:
    """Runs the orchestrator until SIGTERM."""
    config = OrchestratorConfig.from_env()
    provider = setup_telemetry("orchestrator")
    orchestrator = await create_server(config)
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
