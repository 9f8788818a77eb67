"""Rate-limited logging: at most one line per cause per interval, and the next line says how many were held back.

A dependency that is down makes every request fail the same way; a line per request buries the
log (thousands a minute) without saying more than the first one did.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# The most causes remembered at once: causes come from code (a call and a status), but a bound
# keeps a cause built from something else from growing the memory without end.
MAX_CAUSES = 256


@dataclass
class _Cause:
    quiet_until: float
    suppressed: int = 0


class ThrottledLog:
    """Writes to ``logger`` at most one line per cause every ``interval_seconds``."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float = 10.0,
        *,
        max_causes: int = MAX_CAUSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._max_causes = max_causes
        self._clock = clock
        self._causes: OrderedDict[Hashable, _Cause] = OrderedDict()

    def warning(self, cause: Hashable, message: str, *args: object) -> bool:
        """Logs a warning for ``cause`` unless one was logged within the interval; returns whether it was."""
        return self.log(logging.WARNING, cause, message, *args)

    def log(self, level: int, cause: Hashable, message: str, *args: object) -> bool:
        """Logs ``message % args`` at ``level`` unless ``cause`` was logged within the interval; returns whether it was.

        A line held back is counted, and the next line logged for the same cause says how many were.
        """
        now = self._clock()
        state = self._causes.get(cause)
        if state is not None and now < state.quiet_until:
            state.suppressed += 1
            return False
        suppressed = state.suppressed if state is not None else 0
        if state is None and len(self._causes) >= self._max_causes:
            # The cause heard from longest ago goes; its held-back count goes with it.
            self._causes.popitem(last=False)
        self._causes[cause] = _Cause(quiet_until=now + self._interval)
        self._causes.move_to_end(cause)
        if suppressed:
            message += " (%d more like it held back since the last such line)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args)
        return True
