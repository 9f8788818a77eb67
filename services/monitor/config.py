"""The monitor's settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from inferscale.settings import (
    DEFAULT_MONITOR_METRICS_PORT,
    DEFAULT_MONITOR_PORT,
    DEFAULT_TRITON_GRPC_PORT,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True)
class MonitorConfig:
    """Where the monitor listens and serves its metrics."""

    # INFERSCALE_MONITOR_LISTEN: the address the gRPC server binds, "host:port".
    listen: str
    # INFERSCALE_MONITOR_METRICS_PORT: the port of the Prometheus /metrics page; 0 picks a free one.
    metrics_port: int
    # INFERSCALE_MONITOR_METRICS_HOST: the address the /metrics page binds.
    metrics_host: str
    # INFERSCALE_SHUTDOWN_GRACE_SECONDS: how long calls in flight may finish on SIGTERM.
    shutdown_grace_seconds: float
    # INFERSCALE_MONITOR_DB: the SQLite file that keeps feedback and routing policies across
    # restarts; "off" keeps them in memory only.
    database: str
    # INFERSCALE_POLICY_MIN_SHADOW_REQUESTS: scored exploration requests a proposed policy is
    # replayed on in shadow before it is published or rejected, when the proposal names none.
    min_shadow_requests: int
    # INFERSCALE_TRITON_URL: the Triton replicas whose statistics are read, comma-separated; "off"
    # reads none.
    triton_urls: tuple[str, ...]
    # INFERSCALE_TRITON_STATS_SECONDS: how often Triton's statistics are read.
    triton_stats_seconds: float

    @classmethod
    def from_env(cls) -> MonitorConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        database = env_str("INFERSCALE_MONITOR_DB", "~/.local/state/inferscale/monitor.sqlite3")
        triton = env_str("INFERSCALE_TRITON_URL", f"127.0.0.1:{DEFAULT_TRITON_GRPC_PORT}")
        return cls(
            listen=env_str("INFERSCALE_MONITOR_LISTEN", f"[::]:{DEFAULT_MONITOR_PORT}"),
            metrics_port=env_int("INFERSCALE_MONITOR_METRICS_PORT", DEFAULT_MONITOR_METRICS_PORT, minimum=0),
            metrics_host=env_str("INFERSCALE_MONITOR_METRICS_HOST", "0.0.0.0"),
            shutdown_grace_seconds=env_float("INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600),
            database=":memory:" if database == "off" else os.path.expanduser(database),
            min_shadow_requests=env_int("INFERSCALE_POLICY_MIN_SHADOW_REQUESTS", 200, minimum=1),
            triton_urls=() if triton == "off" else tuple(u.strip() for u in triton.split(",") if u.strip()),
            triton_stats_seconds=env_float("INFERSCALE_TRITON_STATS_SECONDS", 5.0, low=0.05, high=3600),
        )
