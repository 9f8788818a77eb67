"""The orchestrator's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferscale.auth import ADMIN_TOKEN_VARIABLE
from inferscale.settings import (
    DEFAULT_CACHE_PORT,
    DEFAULT_MONITOR_PORT,
    DEFAULT_ORCHESTRATOR_PORT,
    DEFAULT_TRITON_GRPC_PORT,
    env_float,
    env_peer,
    env_str,
)
from inferscale.triton.client import REPOSITORY_KEY_VARIABLE


@dataclass(frozen=True)
class OrchestratorConfig:
    """Where the orchestrator listens and whom it calls."""

    # INFERSCALE_ORCHESTRATOR_LISTEN: the address the server binds, "host:port".
    listen: str
    # INFERSCALE_TRITON_URL: Triton's gRPC endpoints, "host:port", several separated by commas
    # (replicas serving the same repository, balanced and failed over).
    triton_urls: tuple[str, ...]
    # INFERSCALE_TRITON_REPOSITORY_KEY: the key presented to Triton's repository API (the
    # registry's index, LoadModel, UnloadModel); unset presents none.
    triton_repository_key: str = field(repr=False)
    # INFERSCALE_CACHE_ADDRESS: the cache, told when a model version retires; "off" for none.
    cache_address: str
    # INFERSCALE_ADMIN_TOKEN: the admin token. The server checks it on LoadModel and UnloadModel
    # (inferscale.auth); the orchestrator presents it to the cache's Invalidate when a model version
    # retires. Unset turns those calls off.
    admin_token: str = field(repr=False)
    # INFERSCALE_TRITON_HEALTH_SECONDS: how often each Triton endpoint's readiness is checked.
    triton_health_seconds: float
    # INFERSCALE_MONITOR_ADDRESS: the monitor, "host:port"; "off" sends no events.
    monitor_address: str
    # INFERSCALE_REGISTRY_REFRESH_SECONDS: how often the registry re-reads Triton's repository.
    registry_refresh_seconds: float
    # INFERSCALE_TRITON_TIMEOUT_SECONDS: the longest one Triton call may take when the caller set
    # no deadline.
    triton_timeout_seconds: float
    # INFERSCALE_SHUTDOWN_GRACE_SECONDS: how long calls in flight may finish on SIGTERM.
    shutdown_grace_seconds: float
    # INFERSCALE_MIN_GAIN_PER_COST: between a cascade's two thresholds, the least expected gain in
    # the chance of being right, per unit of the next tier's cost, that is worth escalating for.
    min_gain_per_cost: float
    # INFERSCALE_CACHE_TIMEOUT_SECONDS: the longest a cache call may delay a step; past it the
    # step runs on Triton.
    cache_timeout_seconds: float
    # INFERSCALE_MODEL_CACHE_MIN_COST: the least cost, in the models' relative units, at which a
    # step's output is looked up in and stored to the cache's per-model level (L3); a cheaper
    # model answers about as fast as the cache would. Embeddings (L2) are always cached.
    model_cache_min_cost: float

    @classmethod
    def from_env(cls) -> OrchestratorConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        return cls(
            listen=env_str("INFERSCALE_ORCHESTRATOR_LISTEN", f"[::]:{DEFAULT_ORCHESTRATOR_PORT}"),
            triton_urls=tuple(
                url.strip()
                for url in env_str("INFERSCALE_TRITON_URL", f"127.0.0.1:{DEFAULT_TRITON_GRPC_PORT}").split(",")
                if url.strip()
            ),
            triton_repository_key=env_str(REPOSITORY_KEY_VARIABLE, ""),
            cache_address=env_peer("INFERSCALE_CACHE_ADDRESS", DEFAULT_CACHE_PORT),
            admin_token=env_str(ADMIN_TOKEN_VARIABLE, ""),
            triton_health_seconds=env_float("INFERSCALE_TRITON_HEALTH_SECONDS", 1.0, low=0.05, high=3600),
            monitor_address=env_peer("INFERSCALE_MONITOR_ADDRESS", DEFAULT_MONITOR_PORT),
            registry_refresh_seconds=env_float(
                "INFERSCALE_REGISTRY_REFRESH_SECONDS", 2.0, low=0.1, high=3600
            ),
            triton_timeout_seconds=env_float(
                "INFERSCALE_TRITON_TIMEOUT_SECONDS", 30.0, low=0.01, high=3600
            ),
            shutdown_grace_seconds=env_float(
                "INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600
            ),
            min_gain_per_cost=env_float("INFERSCALE_MIN_GAIN_PER_COST", 0.01, low=0.0, high=1e6),
            cache_timeout_seconds=env_float("INFERSCALE_CACHE_TIMEOUT_SECONDS", 0.25, low=0.001, high=60),
            model_cache_min_cost=env_float("INFERSCALE_MODEL_CACHE_MIN_COST", 2.0, low=0.0, high=1e9),
        )
