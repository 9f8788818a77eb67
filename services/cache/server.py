"""Starts the cache service: config, backends, telemetry, gRPC server (``python -m services.cache.server``)."""

from __future__ import annotations

import asyncio
import os
import socket

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from inferscale.auth import process_credentials
from inferscale.events import EventSender
from inferscale.rpc import RunningServer, configure_logging, serve_until_stopped, start_server, stop_background
from inferscale.telemetry import setup_telemetry
from inferscale.v1 import cache_service_pb2, cache_service_pb2_grpc
from services.cache.config import CacheConfig
from services.cache.levels import ExactLevel, InvalidationBroadcast, LocalLevel, RedisLevel
from services.cache.semantic import SemanticLevel
from services.cache.service import EXACT_KEY_LEVELS, CacheService, report_stats

SERVICE_NAME = cache_service_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name


def exact_levels(config: CacheConfig) -> tuple[dict[int, ExactLevel], aioredis.Redis | None]:
    """Builds the exact-key levels on the configured backend; returns them and the Redis client, if any."""
    if config.backend == "memory":
        return {level: LocalLevel(config.max_bytes_per_level, config.default_ttl_seconds) for level in EXACT_KEY_LEVELS}, None
    client = aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_timeout_seconds,
        socket_connect_timeout=config.redis_timeout_seconds,
    )
    levels: dict[int, ExactLevel] = {
        level: RedisLevel(client, f"{config.redis_prefix}L{level}:", config.max_bytes_per_level, config.default_ttl_seconds)
        for level in EXACT_KEY_LEVELS
    }
    return levels, client


def invalidation_broadcast(
    config: CacheConfig, commands: aioredis.Redis, semantic: SemanticLevel
) -> tuple[InvalidationBroadcast, aioredis.Redis]:
    """The broadcast of invalidations to the replicas' semantic levels, and the client its subscription has to itself."""
    subscriptions = aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_timeout_seconds,
        socket_connect_timeout=config.redis_timeout_seconds,
        socket_keepalive=True,
        # A broken subscription must surface rather than be renewed quietly: what was broadcast
        # in between is lost, and the broadcast empties the level when it subscribes again.
        retry=Retry(NoBackoff(), 0),
    )
    broadcast = InvalidationBroadcast(
        commands, subscriptions, config.redis_prefix, semantic, confirm_timeout_seconds=config.invalidation_timeout_seconds
    )
    return broadcast, subscriptions


async def serve() -> None:
    """Runs the cache until SIGTERM."""
    config = CacheConfig.from_env()
    provider = setup_telemetry("cache")
    levels, redis_client = exact_levels(config)
    semantic = SemanticLevel(config.max_bytes_per_level, config.default_ttl_seconds)
    invalidations, subscriptions = None, None
    if redis_client is not None:
        invalidations, subscriptions = invalidation_broadcast(config, redis_client, semantic)
        # Subscribed before the server reports SERVING, so that no invalidation is missed after it.
        await invalidations.start(timeout_seconds=config.invalidation_timeout_seconds)
    servicer = CacheService(
        levels,
        semantic,
        default_semantic_threshold=config.semantic_threshold,
        invalidations=invalidations,
    )
    events = EventSender(config.monitor_address, "cache")
    events.start()
    reporter = asyncio.create_task(
        report_stats(servicer, events, f"{socket.gethostname()}:{os.getpid()}", config.stats_interval_seconds)
    )
    running: RunningServer = await start_server(
        config.listen,
        [SERVICE_NAME],
        lambda server: cache_service_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server),
        credentials=process_credentials(),
    )

    async def close() -> None:
        await stop_background(reporter)
        await events.close()
        if invalidations is not None and subscriptions is not None:
            await invalidations.close()
            await subscriptions.aclose()
        if redis_client is not None:
            await redis_client.aclose()

    await serve_until_stopped(running, grace_seconds=config.shutdown_grace_seconds, on_stop=close)
    provider.shutdown()


def main() -> None:
    """Entry point."""
    configure_logging("cache")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
