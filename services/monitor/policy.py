"""Learning a cascade's per-tier accept thresholds from feedback: the least compute that still
reaches a target accuracy.

Pure logic, no gRPC. The data are scored requests on which every tier answered (exploration
traffic, e.g. a cascade run with threshold 1.0), so any thresholds can be replayed offline:
for each candidate, the cascade is simulated on every request (accept at the first tier whose
confidence reaches its threshold; the last tier always answers) and its accuracy and mean cost
measured. The cheapest candidate at or above the target wins; if none reaches it, the most
accurate one (then the cheapest) does.

A policy tuned to the replay's count of right answers alone does not hold on new traffic: out
of some two hundred candidates, the cheapest one that reaches the target is the one whose
thresholds sit just above the mistakes this sample happened to hold. So a candidate must also
reach the target in expectation: each answer a cheaper tier accepts counts as its calibrated
confidence (the tier's temperature fitted on the same data, see calibration.py), which is the
chance that answers of that confidence are right, whether or not this one was. Answers the last
tier gives count as they were scored. The expectation may fall short of the target by half an
answer (0.5 / requests), the data's resolution: without that slack no cheaper tier could ever
"match the top tier", since no calibrated confidence is exactly 1.

(A per-tier Clopper-Pearson bound was tried first: it needs some 180 accepted answers without a
mistake before a tier may be trusted at a 1.7% error target, so on a few hundred requests it
trusted only the cheapest tier and the learned policy cost more than the hand-set defaults.)
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.monitor.calibration import calibrate, fit_temperature

# Candidate accept thresholds per tier; 1.0 means "always escalate past this tier".
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)


@dataclass(frozen=True)
class ScoredStep:
    """One tier's answer to a request, judged by feedback."""

    tier: int
    confidence: float
    right: bool
    cost: float


@dataclass(frozen=True)
class Replay:
    """How a set of thresholds fares on the scored requests."""

    accuracy: float
    mean_cost: float
    # Per tier: (answers it accepted, of which wrong).
    accepted: dict[int, tuple[int, int]] = field(default_factory=dict, compare=False)
    # Accuracy counting each cheaper tier's accepted answer as its calibrated confidence (NaN
    # when no temperatures were given).
    expected_accuracy: float = field(default=float("nan"), compare=False)


@dataclass(frozen=True)
class LearnedPolicy:
    """Per-tier accept thresholds and what they achieved on the data they were learned from."""

    thresholds: dict[int, float]
    replay: Replay
    target_accuracy: float
    requests: int
    # Per tier, its member's weight in ensembles (see ensemble_weights).
    weights: dict[int, float] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A short digest of the thresholds and weights: the same policy always has the same version."""
        text = ",".join(f"{tier}={threshold}" for tier, threshold in sorted(self.thresholds.items()))
        text += ";" + ",".join(f"{tier}={weight}" for tier, weight in sorted(self.weights.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def replay(
    requests: Sequence[Sequence[ScoredStep]], thresholds: dict[int, float], temperatures: dict[int, float] | None = None
) -> Replay:
    """Simulates the cascade with ``thresholds`` on requests whose every tier answered.

    With ``temperatures`` (per tier), also the expected accuracy: see the module's docstring.
    """
    if not requests:
        return Replay(0.0, 0.0)
    right = 0
    expected = 0.0
    cost = 0.0
    accepted: dict[int, list[int]] = {}
    for steps in requests:
        ordered = sorted(steps, key=lambda s: s.tier)
        for step in ordered:
            cost += step.cost
            if step is ordered[-1] or step.confidence >= thresholds.get(step.tier, 1.0):
                right += int(step.right)
                if temperatures is not None:
                    last = step is ordered[-1]
                    expected += float(step.right) if last else float(calibrate(step.confidence, temperatures[step.tier]))
                counts = accepted.setdefault(step.tier, [0, 0])
                counts[0] += 1
                counts[1] += int(not step.right)
                break
    return Replay(
        right / len(requests),
        cost / len(requests),
        {t: (n, e) for t, (n, e) in accepted.items()},
        expected / len(requests) if temperatures is not None else float("nan"),
    )


# A member no better than chance still gets a small weight: on the wire, a weight of 0 means 1.
MIN_WEIGHT = 0.01


def ensemble_weights(requests: Sequence[Sequence[ScoredStep]]) -> dict[int, float]:
    """Per tier, the weight of its member in an ensemble's weighted aggregation.

    The weight is the log odds of the tier's accuracy, log(p / (1 - p)): for independent voters,
    the weighted majority with these weights is the most likely to be right (Nitzan and Paroush,
    1982). p is smoothed by Laplace's rule, (right + 1) / (answers + 2), so that a tier right on
    every answer seen gets a large but finite weight. Rounded to three decimals, so that the
    same data always gives the same policy version.
    """
    answers: dict[int, list[int]] = {}
    for steps in requests:
        for step in steps:
            counts = answers.setdefault(step.tier, [0, 0])
            counts[0] += 1
            counts[1] += int(step.right)
    weights = {}
    for tier, (total, right) in sorted(answers.items()):
        p = (right + 1) / (total + 2)
        weights[tier] = round(max(MIN_WEIGHT, math.log(p / (1 - p))), 3)
    return weights


def complete_requests(requests: Sequence[Sequence[ScoredStep]]) -> list[Sequence[ScoredStep]]:
    """Keeps the requests on which every tier seen anywhere in the data answered."""
    tiers = {step.tier for steps in requests for step in steps}
    return [steps for steps in requests if {step.tier for step in steps} == tiers]


def learn_thresholds(
    requests: Sequence[Sequence[ScoredStep]],
    target_accuracy: float | None = None,
    grid: Sequence[float] = THRESHOLD_GRID,
) -> LearnedPolicy:
    """Finds the per-tier thresholds of least mean cost whose replayed accuracy, and whose
    calibrated expected accuracy (within half an answer), reach the target.

    ``target_accuracy`` None means the top tier's own accuracy on the data: match the best
    single model, at less compute. Raises ValueError without complete requests.
    """
    usable = complete_requests(requests)
    if not usable:
        raise ValueError("no scored request on which every tier answered; send exploration traffic first")
    tiers = sorted({step.tier for step in usable[0]})
    if target_accuracy is None:
        top = tiers[-1]
        target_accuracy = sum(s.right for steps in usable for s in steps if s.tier == top) / len(usable)
    temperatures = {
        tier: fit_temperature(
            [s.confidence for steps in usable for s in steps if s.tier == tier],
            [s.right for steps in usable for s in steps if s.tier == tier],
        )
        for tier in tiers
    }
    slack = 0.5 / len(usable)
    best: tuple[tuple[float, float], dict[int, float], Replay] | None = None
    for candidate in itertools.product(grid, repeat=len(tiers) - 1):
        thresholds = dict(zip(tiers[:-1], candidate, strict=True))
        result = replay(usable, thresholds, temperatures)
        meets = result.accuracy >= target_accuracy - 1e-12 and result.expected_accuracy >= target_accuracy - slack
        # Meeting the target first; then the least cost; short of it, the most accuracy.
        key = (0.0, result.mean_cost) if meets else (1.0, -result.accuracy + result.mean_cost * 1e-9)
        if best is None or key < best[0]:
            best = (key, thresholds, result)
    assert best is not None
    return LearnedPolicy(
        thresholds=best[1], replay=best[2], target_accuracy=target_accuracy, requests=len(usable), weights=ensemble_weights(usable)
    )
