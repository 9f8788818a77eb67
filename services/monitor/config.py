"""The monitor's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from inferscale.settings import (
    DEFAULT_MONITOR_METRICS_PORT,
    DEFAULT_MONITOR_PORT,
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

    @classmethod
    def from_env(cls) -> MonitorConfig:
        """Reads the settings; raises SettingError naming a malformed variable."""
        return cls(
            listen=env_str("INFERSCALE_MONITOR_LISTEN", f"[::]:{DEFAULT_MONITOR_PORT}"),
            metrics_port=env_int("INFERSCALE_MONITOR_METRICS_PORT", DEFAULT_MONITOR_METRICS_PORT, minimum=0),
            metrics_host=env_str("INFERSCALE_MONITOR_METRICS_HOST", "0.0.0.0"),
            shutdown_grace_seconds=env_float("INFERSCALE_SHUTDOWN_GRACE_SECONDS", 5.0, low=0, high=600),
        )
