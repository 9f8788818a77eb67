"""Each model's recent steps: latency, to stop a step that cannot finish in time, and confidence,
to estimate what escalating to the model is worth.

Pure logic, no gRPC.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class RecentSteps:
    """The last ``size`` latencies and confidences of each model."""

    def __init__(self, size: int = 200) -> None:
        self._size = size
        self._latencies: dict[str, deque[float]] = {}
        self._confidences: dict[str, deque[float]] = {}

    def observe(self, model: str, latency_ms: float, confidence: float) -> None:
        """Records one step of ``model``."""
        self._latencies.setdefault(model, deque(maxlen=self._size)).append(latency_ms)
        self._confidences.setdefault(model, deque(maxlen=self._size)).append(confidence)

    def p95_ms(self, model: str) -> float | None:
        """Returns the model's recent 95th-percentile latency, or None before its first step."""
        samples = self._latencies.get(model)
        if not samples:
            return None
        return float(np.percentile(np.fromiter(samples, dtype=np.float64), 95))

    def mean_confidence(self, model: str) -> float | None:
        """Returns the model's recent mean confidence, or None before its first step."""
        samples = self._confidences.get(model)
        return float(sum(samples) / len(samples)) if samples else None
