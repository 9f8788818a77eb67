"""Starts the monitor: config, telemetry, the /metrics page and the gRPC server (``python -m services.monitor.server``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server

from inferscale.rpc import RunningServer, configure_logging, serve_until_stopped, start_server
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.aggregates import Aggregates
from services.monitor.config import MonitorConfig
from services.monitor.metrics import AggregatesCollector
from services.monitor.service import MonitorService

LOG = logging.getLogger(__name__)
SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


@dataclass
class Monitor:
    """A running monitor: its gRPC server and the port of its /metrics page."""

    running: RunningServer
    metrics_port: int


async def create_server(config: MonitorConfig) -> Monitor:
    """Builds and starts the monitor and its Prometheus page."""
    aggregates = Aggregates()
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    metrics_server, _ = start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
    metrics_port = metrics_server.server_address[1]
    LOG.info("Prometheus metrics on :%d/metrics", metrics_port)
    servicer = MonitorService(aggregates)
    running = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server(servicer, server),
    )
    return Monitor(running, metrics_port)


async def serve() -> None:
    """Runs the monitor until SIGTERM."""
    config = MonitorConfig.from_env()
    provider = setup_telemetry("monitor")
    monitor = await create_server(config)
    await serve_until_stopped(monitor.running, grace_seconds=config.shutdown_grace_seconds)
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("monitor")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
