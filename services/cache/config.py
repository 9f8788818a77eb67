"""The cache service's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from inferscale.settings import (
    DEFAULT_CACHE_PORT,
    DEFAULT_MONITOR_PORT,
    SettingError,
    env_float,
    env_int,
    env_peer,
    env_str,
)

BACKENDS = ("memory", "redis")


@dataclass(frozen=True)
class CacheConfig:
    """Where the cache listens, where it keeps entries and how much each level may hold."""

    # INFERSCALE_CACHE_LISTEN: the address the server binds, "host:port".
    listen: str
    # INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL: each level's bound on keys plus values, in bytes.
    max_bytes_per_level: int
    # INFERSCALE_CACHE_DEFAULT_TTL_SECONDS: how long an entry lives when its store names no TTL.
    default_ttl_seconds: int
    # INFERSCALE_CACHE_SEMANTIC_THRESHOLD: the cosine similarity a semantic neighbour must reach
    # when the lookup names none.
    semantic_threshold: float
    # INFERSCALE_CACHE_BACKEND: "memory" (this process) or "redis" (shared by every replica
    # pointing at the same Redis and prefix) for the exact-key levels L2-L4; L1's index is always
    # in this process.
    backend: str
    # INFERSCALE_CACHE_REDIS_URL: the Redis server, for example "redis://127.0.0.1:6379/0".
    redis_url: str
    # INFERSCALE_CACHE_REDIS_PREFIX: the prefix of every key the cache writes in Redis.
    redis_prefix: str
    # INFERSCALE_CACHE_REDIS_TIMEOUT_SECONDS: the longest any Redis call may take; past it the
    # call fails UNAVAILABLE and the router goes on without the cache.
    redis_timeout_seconds: float
    # INFERSCALE_CACHE_INVALIDATION_TIMEOUT_SECONDS: with Redis, how long an invalidation waits for
    # every replica to confirm that its semantic level dropped the entries; past it the call fails
    # UNAVAILABLE (and may be repeated).
    invalidation_timeout_seconds: float
    # INFERSCALE_MONITOR_ADDRESS: the monitor that receives the levels' statistics; "off" sends none.
    monitor_address: str
    # INFERSCALE_CACHE_STATS_INTERVAL_SECONDS: how often the statistics go to the monitor.
    stats_interval_seconds: float
    # INFERSCALE_SHUTDOWN_GRACE_SECONDS: how long calls in flight may finish on SIGTERM.
    shutdown_grace_seconds: float

    @classmethod
    def from_env(cls) -> CacheConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        backend = env_str("INFERSCALE_CACHE_BACKEND", "memory")
        if backend not in BACKENDS:
            raise SettingError(f"INFERSCALE_CACHE_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
        return cls(
            listen=env_str("INFERSCALE_CACHE_LISTEN", f"[::]:{DEFAULT_CACHE_PORT}"),
            max_bytes_per_level=env_int("INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL", 256 * 1024 * 1024, minimum=1024),
            default_ttl_seconds=env_int("INFERSCALE_CACHE_DEFAULT_TTL_SECONDS", 3600, minimum=1),
            semantic_threshold=env_float("INFERSCALE_CACHE_SEMANTIC_THRESHOLD", 0.85, low=0.0, high=1.0),
            backend=backend,
            redis_url=env_str("INFERSCALE_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=env_str("INFERSCALE_CACHE_REDIS_PREFIX", "inferscale:cache:"),
            redis_timeout_seconds=env_float("INFERSCALE_CACHE_REDIS_TIMEOUT_SECONDS", 0.2, low=0.001, high=60),
            invalidation_timeout_seconds=env_float("INFERSCALE_CACHE_INVALIDATION_TIMEOUT_SECONDS", 1.0, low=0.01, high=60),
            monitor_address=env_peer("INFERSCALE_MONITOR_ADDRESS", DEFAULT_MONITOR_PORT),
            stats_interval_seconds=env_float("INFERSCALE_CACHE_STATS_INTERVAL_SECONDS", 5.0, low=0.05, high=3600),
            shutdown_grace_seconds=env_float("INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600),
        )
