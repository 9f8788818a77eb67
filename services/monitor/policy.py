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

The work of one call is bounded: at most MAX_POLICY_CANDIDATES threshold sets are replayed,
whatever the number of tiers (every combination of the grid for six tiers would be 537,824). Up
to that many, the search tries every combination (so up to four tiers with the default grid, the
cheapest policy is found exactly); past it, it searches coordinate-wise, from each threshold
shared by every tier, best first, until the bound is reached: one tier's threshold at a time moves
to its best grid value with the others held, until no such move is better; then a pair move (one
tier's threshold a grid step up or down, another's anywhere) gets past the points where lowering
one threshold alone misses the target, and the single moves resume. On 180 synthetic data sets of
five tiers this found the exhaustive search's policy on 176, and one at most 2.9% costlier on the
others, in at most 2,620 replays of 38,416.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.monitor.calibration import calibrate, fit_temperature

# Candidate accept thresholds per tier; 1.0 means "always escalate past this tier".
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
# The most threshold sets one learning replays: 14**3 (every combination for four tiers) fits.
MAX_POLICY_CANDIDATES = 4096
# The most tiers a policy is learned for: a cascade has no more than a plan has steps (the
# inferscale.limits.MAX_PLAN_STEPS), and a search move grows with the square of the tiers.
MAX_POLICY_TIERS = 32


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
    # How many threshold sets the search replayed, at most MAX_POLICY_CANDIDATES.
    candidates: int = field(default=0, compare=False)

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


def _descend(start: tuple[float, ...], grid: tuple[float, ...], better: Callable[..., bool]) -> tuple[float, ...]:
    """Moves one tier's threshold at a time to a better grid value, the others held, until none is better."""
    best, improved = start, True
    while improved:
        improved = False
        for index in range(len(best)):
            for value in grid:
                candidate = (*best[:index], value, *best[index + 1 :])
                if better(candidate, best):
                    best, improved = candidate, True
    return best


def _pair_move(best: tuple[float, ...], grid: tuple[float, ...], better: Callable[..., bool]) -> tuple[float, ...]:
    """Moves one tier's threshold a grid step up or down and another's anywhere, as long as that is better."""
    for index in range(len(best)):
        for step in (-1, 1):
            position = grid.index(best[index]) + step
            if not 0 <= position < len(grid):
                continue
            for other in range(len(best)):
                if other == index:
                    continue
                for value in grid:
                    moved = list(best)
                    moved[index], moved[other] = grid[position], value
                    if better(tuple(moved), best):
                        best = tuple(moved)
    return best


def _coordinate_search(
    free: int,
    grid: tuple[float, ...],
    better: Callable[..., bool],
    judge: Callable[[tuple[float, ...]], tuple[float, float]],
    spent: Callable[[], bool],
) -> tuple[float, ...]:
    """The best thresholds for ``free`` tiers that single and pair moves find from each shared
    threshold, best first, until the budget is ``spent`` (see the module's docstring)."""
    found = []
    for start in sorted(((value,) * free for value in grid), key=judge):
        if found and spent():
            break
        best = _descend(start, grid, better)
        while (moved := _pair_move(best, grid, better)) != best:
            best = _descend(moved, grid, better)
        found.append(best)
    return min(found, key=judge)


class _ArrayReplay:
    """The scored requests as arrays, so that replaying one set of thresholds is a few numpy
    operations over the requests rather than a Python loop: what ``replay`` computes, without the
    per-tier counts."""

    def __init__(
        self, requests: Sequence[Sequence[ScoredStep]], tiers: Sequence[int], temperatures: dict[int, float]
    ) -> None:
        ordered = [sorted(steps, key=lambda s: s.tier) for steps in requests]
        count, width = len(ordered), max(len(steps) for steps in ordered)
        position = {tier: index for index, tier in enumerate(tiers)}
        # Padding sits past the last step, at a tier slot whose threshold no confidence reaches.
        self._tier = np.full((count, width), len(tiers), dtype=np.intp)
        self._confidence = np.zeros((count, width))
        self._right = np.zeros((count, width), dtype=np.int64)
        self._spent = np.zeros((count, width))
        self._last = np.array([len(steps) - 1 for steps in ordered], dtype=np.intp)
        self._rows = np.arange(count)
        for row, steps in enumerate(ordered):
            length = len(steps)
            self._tier[row, :length] = [position[s.tier] for s in steps]
            self._confidence[row, :length] = [s.confidence for s in steps]
            self._right[row, :length] = [int(s.right) for s in steps]
            self._spent[row, :length] = np.cumsum([s.cost for s in steps])
        # An accepted answer counts as its calibrated confidence, the last one as it was scored.
        self._expected = np.zeros((count, width))
        for slot, tier in enumerate(tiers):
            steps_of_tier = self._tier == slot
            self._expected[steps_of_tier] = calibrate(self._confidence[steps_of_tier], temperatures[tier])
        self._expected[self._rows, self._last] = self._right[self._rows, self._last]

    def outcome(self, thresholds: Sequence[float]) -> tuple[float, float, float]:
        """Accuracy, mean cost and expected accuracy of the cascade with ``thresholds`` for every tier but the last."""
        # The last tier's threshold is 1.0, as in ``replay``: it matters only where it answers twice.
        by_tier = np.array([*thresholds, 1.0, np.inf])
        accepts = self._confidence >= by_tier[self._tier]
        accepts[self._rows, self._last] = True
        chosen = accepts.argmax(axis=1)
        count = len(self._rows)
        return (
            int(self._right[self._rows, chosen].sum()) / count,
            float(self._spent[self._rows, chosen].sum()) / count,
            float(self._expected[self._rows, chosen].sum()) / count,
        )


def learn_thresholds(
    requests: Sequence[Sequence[ScoredStep]],
    target_accuracy: float | None = None,
    grid: Sequence[float] = THRESHOLD_GRID,
    max_candidates: int = MAX_POLICY_CANDIDATES,
) -> LearnedPolicy:
    """Finds the per-tier thresholds of least mean cost whose replayed accuracy, and whose
    calibrated expected accuracy (within half an answer), reach the target, replaying at most
    ``max_candidates`` threshold sets (see the module's docstring for the order).

    ``target_accuracy`` None means the top tier's own accuracy on the data: match the best
    single model, at less compute. Raises ValueError without complete requests.
    """
    usable = complete_requests(requests)
    if not usable:
        raise ValueError("no scored request on which every tier answered; send exploration traffic first")
    tiers = sorted({step.tier for step in usable[0]})
    if len(tiers) > MAX_POLICY_TIERS:
        raise ValueError(f"the scored requests have {len(tiers)} tiers, more than the {MAX_POLICY_TIERS} a policy is learned for")
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
    arrays = _ArrayReplay(usable, tiers, temperatures)
    slack = 0.5 / len(usable)
    judged: dict[tuple[float, ...], tuple[float, float]] = {}

    def judge(candidate: tuple[float, ...]) -> tuple[float, float]:
        if candidate not in judged:
            accuracy, cost, expected = arrays.outcome(candidate)
            # Rounded, so that costs equal but for the order they were summed in tie, and the first wins.
            cost = round(cost, 9)
            meets = accuracy >= target_accuracy - 1e-12 and expected >= target_accuracy - slack
            # Meeting the target first; then the least cost; short of it, the most accuracy.
            judged[candidate] = (0.0, cost) if meets else (1.0, -accuracy + cost * 1e-9)
        return judged[candidate]

    free = len(tiers) - 1
    if len(grid) ** free <= max_candidates:
        best = min(itertools.product(grid, repeat=free), key=judge)
    else:

        def better(candidate: tuple[float, ...], than: tuple[float, ...]) -> bool:
            # A set judged before costs no replay; a new one only while the budget lasts.
            affordable = candidate in judged or len(judged) < max_candidates
            return affordable and judge(candidate) < judge(than)

        best = _coordinate_search(free, tuple(grid), better, judge, lambda: len(judged) >= max_candidates)
    thresholds = dict(zip(tiers[:-1], best, strict=True))
    return LearnedPolicy(
        thresholds=thresholds,
        replay=replay(usable, thresholds, temperatures),
        target_accuracy=target_accuracy,
        requests=len(usable),
        weights=ensemble_weights(usable),
        candidates=len(judged),
    )
