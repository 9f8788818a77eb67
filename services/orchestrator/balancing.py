"""Choosing a Triton endpoint: least outstanding requests among the healthy ones.

Pure logic, no gRPC. An endpoint leaves the rotation when its health check or a call fails,
and returns when a health check succeeds again; out of the rotation it is a last resort only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Endpoint:
    """One Triton server and what the balancer knows of it."""

    url: str
    healthy: bool = True
    outstanding: int = 0
    # Calls sent here in all; among equally idle endpoints the less used one goes first, so
    # that a sequential client still spreads over every replica.
    served: int = 0
    failures: int = 0
    last_error: str = ""

    def mark_failed(self, reason: str) -> None:
        """Takes the endpoint out of the rotation until a health check passes."""
        self.healthy = False
        self.failures += 1
        self.last_error = reason

    def mark_healthy(self) -> None:
        """Puts the endpoint back into the rotation."""
        self.healthy = True


def choose(endpoints: Iterable[Endpoint], exclude: frozenset[str] = frozenset()) -> Endpoint | None:
    """Returns the endpoint, not in ``exclude``, to call next; None when every one is excluded.

    Healthy endpoints come first, fewest requests in flight first. One out of the rotation is
    chosen only when no healthy one is left: trying it costs a fast failure at worst, whereas
    refusing outright would fail every request until the next health check.
    """
    candidates = [e for e in endpoints if e.url not in exclude]
    if not candidates:
        return None
    return min(candidates, key=lambda e: (not e.healthy, e.outstanding, e.served))
