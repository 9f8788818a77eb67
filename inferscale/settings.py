"""Reading settings from the environment once, failing fast with the variable's name."""

from __future__ import annotations

import os


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def env_str(name: str, default: str) -> str:
    """Returns the variable ``name``, or ``default`` when it is unset or empty."""
    return os.environ.get(name, "").strip() or default


def env_peer(name: str, default_port: int) -> str:
    """Returns a peer service's address from ``name``, "127.0.0.1:<default_port>" when unset, "" when "off"."""
    address = env_str(name, f"127.0.0.1:{default_port}")
    return "" if address == "off" else address


def env_switch(name: str, default: bool) -> bool:
    """Returns the variable ``name`` as "on" (True) or "off" (False), or ``default``; raises SettingError naming it."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise SettingError(f"{name}={raw!r} is neither 'on' nor 'off'")
    return raw == "on"


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Returns the variable ``name`` as an integer, or ``default``; raises SettingError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={value} is below its minimum {minimum}")
    return value


def env_float(name: str, default: float, *, low: float, high: float) -> float:
    """Returns the variable ``name`` as a float in [low, high], or ``default``; raises SettingError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingError(f"{name}={value} is outside [{low}, {high}]")
    return value


# Default ports of the suite on one machine; each is one setting away (see README "Ports and settings").
DEFAULT_ROUTER_PORT = 50051
DEFAULT_ORCHESTRATOR_PORT = 50052
DEFAULT_CACHE_PORT = 50053
DEFAULT_MONITOR_PORT = 50054
DEFAULT_MONITOR_METRICS_PORT = 9464
DEFAULT_TRITON_GRPC_PORT = 8001
