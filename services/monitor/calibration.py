"""How well a model's confidence predicts that it is right: reliability bins, expected calibration
error, and a fitted temperature that makes a confidence of 0.9 mean right nine times in ten.

Pure logic, no gRPC. Models report only the confidence of their answer (the winning class's
probability), so the temperature acts on that confidence's log-odds: calibrated =
sigmoid(logit(confidence) / T). T > 1 tempers an overconfident model, T < 1 sharpens an
underconfident one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

_EPSILON = 1e-6


@dataclass(frozen=True)
class ReliabilityBin:
    """Answers whose confidence fell in [low, high): how many, how sure on average, how often right."""

    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Splits [0, 1] into ``bins`` equal bins (the last one closed) and summarises each non-empty one."""
    c = np.asarray(confidences, dtype=np.float64)
    r = np.asarray(correct, dtype=np.float64)
    if c.shape != r.shape:
        raise ValueError("confidences and correct must have the same length")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.minimum(np.digitize(c, edges[1:-1], right=False), bins - 1)
    result = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            result.append(
                ReliabilityBin(float(edges[b]), float(edges[b + 1]), int(mask.sum()), float(c[mask].mean()), float(r[mask].mean()))
            )
    return result


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """The count-weighted mean gap between confidence and accuracy over the reliability bins."""
    total = len(confidences)
    if total == 0:
        return 0.0
    return float(sum(b.count * abs(b.accuracy - b.mean_confidence) for b in reliability_bins(confidences, correct, bins)) / total)


def calibrate(confidence: np.ndarray | float, temperature: float) -> np.ndarray:
    """Applies a fitted temperature to confidences."""
    c = np.clip(np.asarray(confidence, dtype=np.float64), _EPSILON, 1 - _EPSILON)
    return 1.0 / (1.0 + np.exp(-np.log(c / (1 - c)) / temperature))


def fit_temperature(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Returns the temperature in [0.05, 20] that minimises the log loss of the calibrated confidences.

    With no answers, or only right (or only wrong) ones, there is nothing to fit and 1.0 is returned.
    """
    c = np.asarray(confidences, dtype=np.float64)
    r = np.asarray(correct, dtype=np.float64)
    if c.size == 0 or r.min() == r.max():
        return 1.0

    def log_loss(log_t: float) -> float:
        p = np.clip(calibrate(c, float(np.exp(log_t))), _EPSILON, 1 - _EPSILON)
        return float(-np.mean(r * np.log(p) + (1 - r) * np.log(1 - p)))

    best = minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(best.x))
