"""Reading a model's answer and confidence from its output, and the cascade's decisions.

Pure logic, no gRPC. A cascade step's answer is judged in three bands: at or above the accept
threshold it is accepted; below the escalate threshold it escalates; in between, it escalates
only if the request is complex or the next tier's expected gain is worth its cost. Before a step
starts, the remaining deadline and the cost ceiling may stop the cascade, which then returns the
best answer so far. An expert plan picks the one model whose complexity band holds the score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inferscale.arc.tasks import to_grid

# The end of the reason of a plan step whose model left routing (removed, unloaded, not ready)
# between planning and running. Such a step is reported wherever it stands in the plan, even
# after the step that answered (it made that step the last), and the router reads this reason:
# the answer is not the whole plan's, so it is not kept under the plan's cache key.
LEFT_ROUTING = "left routing after the plan was made"


@dataclass(frozen=True)
class ReadAnswer:
    """A model's answer as the plan sees it."""

    label: str
    confidence: float
    # The model's further candidates, best first, distinct from label and from each other.
    alternatives: tuple[tuple[str, float], ...] = ()


def read_class_probabilities(probabilities: np.ndarray) -> ReadAnswer:
    """Reads an [N, classes] (or [classes]) probability output.

    The label is each row's winning class, comma-separated for a batch; the confidence is the
    smallest of the rows' maxima, since one unsure row is reason enough to escalate the batch.
    """
    rows = np.atleast_2d(probabilities)
    if rows.size == 0:
        raise ValueError("the model returned an empty probability tensor")
    # NaN fails both comparisons. Logits or a broken model are not probabilities: their
    # "confidence" would decide escalations and skew the monitor's calibration. The slack is
    # float32 rounding of a softmax.
    if not ((rows >= 0.0) & (rows <= 1.0 + 1e-5)).all():
        raise ValueError("the model's output holds values outside [0, 1]: it is not a probability")
    winners = rows.argmax(axis=1)
    confidence = min(float(rows.max(axis=1).min()), 1.0)
    return ReadAnswer(label=",".join(str(int(c)) for c in winners), confidence=confidence)


def read_grids(answers: Sequence[bytes], scores: np.ndarray) -> ReadAnswer:
    """Reads grid answers: ``answers`` one or more candidate grids as JSON (rows of integers 0-9),
    best first, ``scores`` one value in [0, 1] for each. The label is the first grid's compact
    JSON, so that equal grids are equal labels; the others, distinct, are its alternatives."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not answers or values.size != len(answers) or not ((values >= 0.0) & (values <= 1.0)).all():
        raise ValueError(f"the scores must be one number in [0, 1] per answer grid, got {values.tolist()[:4]} for {len(answers)}")
    read: dict[str, float] = {}
    for index, answer in enumerate(answers):
        try:
            grid = to_grid(json.loads(answer), f"answer grid {index}")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"the answer is not a grid: {error}") from None
        read.setdefault(json.dumps([list(row) for row in grid], separators=(",", ":")), float(values[index]))
    (label, confidence), *others = read.items()
    return ReadAnswer(label=label, confidence=confidence, alternatives=tuple(others))


@dataclass(frozen=True)
class StepDecision:
    """Whether to accept a step's answer, and why."""

    accept: bool
    reason: str


@dataclass(frozen=True)
class NextTier:
    """What the cascade knows of the tier it would escalate to."""

    cost: float
    # How often the next tier is expected to be right, in [0, 1]: its recent mean confidence
    # until the monitor's measured accuracy replaces it.
    expected_accuracy: float


def decide(
    confidence: float,
    accept_threshold: float,
    *,
    is_last: bool,
    escalate_threshold: float | None = None,
    complexity: float = 0.0,
    complexity_cutoff: float = 0.5,
    next_tier: NextTier | None = None,
    min_gain_per_cost: float = 0.0,
) -> StepDecision:
    """Decides a cascade step by the three confidence bands.

    ``escalate_threshold`` None (or not below ``accept_threshold``) leaves one threshold: accept
    at or above it, escalate below. In the band between the thresholds the step escalates when
    ``complexity`` reaches ``complexity_cutoff``, or when the next tier's expected gain in the
    chance of being right, per unit of its cost, reaches ``min_gain_per_cost``; else it accepts.
    The last step is always accepted.
    """
    c, high = confidence, accept_threshold
    if c >= high:
        return StepDecision(True, f"confidence {c:.3f} >= threshold {high:.3f}")
    if is_last:
        return StepDecision(True, f"confidence {c:.3f} < threshold {high:.3f}, but no tier is left")
    low = escalate_threshold if escalate_threshold is not None and escalate_threshold < high else high
    if c < low:
        return StepDecision(False, f"confidence {c:.3f} < threshold {low:.3f}" if low == high
                            else f"confidence {c:.3f} < escalate threshold {low:.3f}")
    band = f"confidence {c:.3f} in [{low:.3f}, {high:.3f})"
    if complexity >= complexity_cutoff:
        return StepDecision(False, f"{band} and complexity {complexity:.2f} >= {complexity_cutoff:.2f}")
    if next_tier is not None and next_tier.cost > 0:
        gain_per_cost = (next_tier.expected_accuracy - c) / next_tier.cost
        if gain_per_cost >= min_gain_per_cost:
            return StepDecision(
                False, f"{band}; expected gain per cost {gain_per_cost:.4f} >= {min_gain_per_cost:.4f}"
            )
        return StepDecision(
            True, f"{band}; expected gain per cost {gain_per_cost:.4f} < {min_gain_per_cost:.4f}"
        )
    return StepDecision(True, f"{band} and complexity {complexity:.2f} < {complexity_cutoff:.2f}")


def stop_before(
    *,
    cost: float,
    spent: float,
    cost_ceiling: float,
    p95_ms: float | None,
    remaining_ms: float | None,
) -> str:
    """Returns why a step must not start (empty when it may): it would break the cost ceiling,
    or its recent p95 latency exceeds what is left of the deadline."""
    if cost_ceiling > 0 and spent + cost > cost_ceiling:
        return f"cost {spent:.2f} + {cost:.2f} would exceed the ceiling {cost_ceiling:.2f}"
    if p95_ms is not None and remaining_ms is not None and p95_ms > remaining_ms:
        return f"recent p95 latency {p95_ms:.1f} ms exceeds the {remaining_ms:.1f} ms left of the deadline"
    return ""


def choose_expert(bands: Sequence[tuple[float, float]], score: float) -> int:
    """Returns the index of the expert band [low, high) that holds the complexity ``score`` (a band
    ending at 1 includes 1). Between bands, or past them, the nearest band answers, the more
    capable (higher) one on a tie. Raises ValueError without bands."""
    if not bands:
        raise ValueError("no expert bands")

    def distance(band: tuple[float, float]) -> float:
        low, high = band
        if low <= score < high or (high >= 1.0 and score >= high):
            return 0.0
        return low - score if score < low else score - high

    return min(range(len(bands)), key=lambda i: (distance(bands[i]), -bands[i][0]))

