"""A circuit breaker for calls to a dependency that may be down: after a failure, calls skip it at once until a probe finds it back.

Without one, every request pays the full timeout of every call to a dependency that does not
answer. With one, the first failure opens the circuit; while it is open, calls are skipped without
waiting; every ``retry_after_seconds`` one call goes through as a probe, and its success closes the
circuit again. So a request pays at most one timeout while the dependency is down, and the
dependency sees at most one call per interval. Pure logic: the caller makes the calls and reports
how they ended.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class CircuitState(enum.Enum):
    """Where a circuit stands."""

    # Calls go through.
    CLOSED = "closed"
    # A call failed: calls are skipped until the retry interval has passed.
    OPEN = "open"
    # One call, the probe, is out; the others are skipped until it reports.
    PROBING = "probing"


class CircuitBreaker:
    """Decides, call by call, whether a call to the dependency goes out; told how each one ended."""

    def __init__(self, retry_after_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not retry_after_seconds > 0:
            raise ValueError(f"retry_after_seconds {retry_after_seconds} must be positive")
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._state = CircuitState.CLOSED
        # While open: when the next probe may go. While probing: when the probe counts as lost.
        self._next_probe_at = 0.0
        self.skipped_total = 0
        self.opened_total = 0

    @property
    def state(self) -> CircuitState:
        """The circuit's state now."""
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; False means skip the dependency, at once."""
        if self._state is CircuitState.CLOSED:
            return True
        now = self._clock()
        # A probe that never reported (its caller was cancelled) must not keep the circuit open
        # for good: after an interval another call probes.
        if now >= self._next_probe_at:
            self._state = CircuitState.PROBING
            self._next_probe_at = now + self._retry_after
            return True
        self.skipped_total += 1
        return False

    @property
    def retry_after_seconds(self) -> float:
        """How long calls are skipped after a failure before one probes."""
        return self._retry_after

    def succeeded(self) -> bool:
        """Reports a call that reached the dependency: the circuit closes; returns whether it was not closed before."""
        recovered = self._state is not CircuitState.CLOSED
        self._state = CircuitState.CLOSED
        return recovered

    def failed(self) -> bool:
        """Reports a call that found the dependency down; returns whether this failure opened a closed circuit."""
        opened = self._state is CircuitState.CLOSED
        self._state = CircuitState.OPEN
        self._next_probe_at = self._clock() + self._retry_after
        if opened:
            self.opened_total += 1
        return opened
