"""The cache service's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from inferscale.settings import DEFAULT_CACHE_PORT, env_float, env_int, env_str


@dataclass(frozen=True)
class CacheConfig:
    """Where the cache listens and how much each level may hold."""

    # INFERSCALE_CACHE_LISTEN: the address the server binds, "host:port".
    listen: str
    # INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL: each level's bound on keys plus values, in bytes.
    max_bytes_per_level: int
    # INFERSCALE_CACHE_DEFAULT_TTL_SECONDS: how long an entry lives when its store names no TTL.
    default_ttl_seconds: int
    # INFERSCALE_SHUTDOWN_GRACE_SECONDS: how long calls in flight may finish on SIGTERM.
    shutdown_grace_seconds: float

    @classmethod
    def from_env(cls) -> CacheConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        return cls(
            listen=env_str("INFERSCALE_CACHE_LISTEN", f"[::]:{DEFAULT_CACHE_PORT}"),
            max_bytes_per_level=env_int("INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL", 256 * 1024 * 1024, minimum=1024),
            default_ttl_seconds=env_int("INFERSCALE_CACHE_DEFAULT_TTL_SECONDS", 3600, minimum=1),
            shutdown_grace_seconds=env_float("INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600),
        )
