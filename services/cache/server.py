"""Starts the cache service: config, telemetry, gRPC server (``python -m services.cache.server``)."""

from __future__ import annotations

import asyncio

from inferscale.rpc import RunningServer, configure_logging, serve_until_stopped, start_server
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc
from services.cache.config import CacheConfig
from services.cache.service import CacheService

SERVICE_NAME = cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name


async def create_server(config: CacheConfig) -> RunningServer:
    """Builds and starts the cache service."""
    servicer = CacheService(config.max_bytes_per_level, config.default_ttl_seconds)
    return await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: cache_service_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server),
    )


async def serve() -> None:
    """Runs the cache until SIGTERM."""
    config = CacheConfig.from_env()
    provider = setup_telemetry("cache")
    running = await create_server(config)
    await serve_until_stopped(running, grace_seconds=config.shutdown_grace_seconds)
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("cache")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
