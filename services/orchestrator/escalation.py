"""Reading a model's answer and confidence from its output, and the cascade's accept-or-escalate decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReadAnswer:
    """A model's answer as the plan sees it."""

    label: str
    confidence: float


def read_class_probabilities(probabilities: np.ndarray) -> ReadAnswer:
    """Reads an [N, classes] (or [classes]) probability output.

    The label is each row's winning class, comma-separated for a batch; the confidence is the
    smallest of the rows' maxima, since one unsure row is reason enough to escalate the batch.
    """
    rows = np.atleast_2d(probabilities)
    if rows.size == 0:
        raise ValueError("the model returned an empty probability tensor")
    winners = rows.argmax(axis=1)
    confidence = float(rows.max(axis=1).min())
    return ReadAnswer(label=",".join(str(int(c)) for c in winners), confidence=confidence)


@dataclass(frozen=True)
class StepDecision:
    """Whether to accept a step's answer, and why."""

    accept: bool
    reason: str


def decide(confidence: float, threshold: float, *, is_last: bool) -> StepDecision:
    """Accepts an answer whose confidence reaches the threshold, and always the last step's."""
    if confidence >= threshold:
        return StepDecision(True, f"confidence {confidence:.3f} >= threshold {threshold:.3f}")
    if is_last:
        return StepDecision(
            True, f"confidence {confidence:.3f} < threshold {threshold:.3f}, but no tier is left"
        )
    return StepDecision(False, f"confidence {confidence:.3f} < threshold {threshold:.3f}")
