"""Starts the monitor: config, telemetry, the /metrics page and the gRPC server (``python -m services.monitor.server``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server

from inferscale.auth import process_credentials
from inferscale.rpc import RunningServer, configure_logging, serve_until_stopped, start_server, stop_background
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from services.monitor.aggregates import MAX_SCORED_REQUESTS, Aggregates
from services.monitor.config import MonitorConfig
from services.monitor.metrics import AggregatesCollector
from services.monitor.policy_book import PolicyBook
from services.monitor.service import MonitorService
from services.monitor.store import MonitorStore
from services.monitor.triton_stats import poll_triton

LOG = logging.getLogger(__name__)
SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name


@dataclass
class Monitor:
    """A running monitor: its gRPC server, the port of its /metrics page and what it must close on stop."""

    running: RunningServer
    metrics_port: int
    store: MonitorStore
    triton_poller: asyncio.Task[None] | None

    async def close(self) -> None:
        """Stops reading Triton and closes the database."""
        await stop_background(self.triton_poller)
        self.store.close()


async def create_server(config: MonitorConfig) -> Monitor:
    """Builds and starts the monitor and its Prometheus page."""
    aggregates = Aggregates()
    store = MonitorStore(config.database, MAX_SCORED_REQUESTS)
    # What was learned before a restart comes back: accuracy, calibration, the learner's data.
    for scored in store.scored_requests():
        aggregates.add_scored(scored)
    book = PolicyBook.restored(store.policies(), store.save_policy)
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    metrics_server, _ = start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
    metrics_port = metrics_server.server_address[1]
    LOG.info("Prometheus metrics on :%d/metrics", metrics_port)
    servicer = MonitorService(aggregates, book, store, min_shadow_requests=config.min_shadow_requests)
    running = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server(servicer, server),
        credentials=process_credentials(),
    )
    poller = (
        asyncio.create_task(poll_triton(config.triton_urls, aggregates, config.triton_stats_seconds))
        if config.triton_urls
        else None
    )
    return Monitor(running, metrics_port, store, poller)


async def serve() -> None:
    """Runs the monitor until SIGTERM."""
    config = MonitorConfig.from_env()
    provider = setup_telemetry("monitor")
    monitor = await create_server(config)
    await serve_until_stopped(monitor.running, grace_seconds=config.shutdown_grace_seconds, on_stop=monitor.close)
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("monitor")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
