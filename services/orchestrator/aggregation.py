"""Combining an ensemble's answers, and measuring how much its members disagree.

Pure logic, no gRPC. Three rules: the mean of the members' class probabilities (optionally
weighted), a weighted vote over their winning classes, and the plurality of equal discrete
answers. Disagreement is the entropy of the vote (0 when all agree) and the spread of the
members' probabilities for the winning class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Combined:
    """An ensemble's answer and its uncertainty."""

    label: str
    confidence: float
    # The entropy of the members' votes in bits: 0 when they agree, log2(members) at most.
    vote_entropy: float
    # max - min of the members' probability for the chosen class (0 for discrete answers).
    probability_spread: float
    probabilities: np.ndarray | None = None


def vote_entropy(labels: Sequence[str], weights: Sequence[float] | None = None) -> float:
    """Returns the entropy, in bits, of the (weighted) distribution of the members' answers."""
    weights = list(weights) if weights is not None else [1.0] * len(labels)
    totals: dict[str, float] = {}
    for label, weight in zip(labels, weights, strict=True):
        totals[label] = totals.get(label, 0.0) + weight
    mass = sum(totals.values())
    if mass <= 0:
        return 0.0
    # sum(p * log2(1 / p)): no negative zero when every member agrees.
    return float(sum((w / mass) * math.log2(mass / w) for w in totals.values() if w > 0))


def mean_probability(members: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> Combined:
    """Averages [N, classes] probability outputs; the answer is each row's winning class.

    For a batch the label joins the rows' classes with commas and the confidence is the least
    sure row's, as for a single model's answer.
    """
    if not members:
        raise ValueError("an ensemble needs at least one member's answer")
    stacked = np.stack([np.atleast_2d(m) for m in members])  # [members, N, classes]
    w = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64)
    if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be one non-negative number per member, not all zero")
    mean = np.tensordot(w / w.sum(), stacked, axes=1)  # [N, classes]
    winners = mean.argmax(axis=1)
    rows = np.arange(mean.shape[0])
    per_member_winner = stacked[:, rows, winners]  # [members, N]
    member_labels = [",".join(str(int(c)) for c in m.argmax(axis=1)) for m in stacked]
    return Combined(
        label=",".join(str(int(c)) for c in winners),
        confidence=float(mean[rows, winners].min()),
        vote_entropy=vote_entropy(member_labels, list(w)),
        probability_spread=float((per_member_winner.max(axis=0) - per_member_winner.min(axis=0)).max()),
        probabilities=mean.astype(np.float32),
    )


def weighted_vote(labels: Sequence[str], confidences: Sequence[float], weights: Sequence[float]) -> Combined:
    """Each member votes for its answer with its weight; the answer with the most weight wins.

    The confidence is the winning answer's share of the weight; ties go to the answer whose
    voters were most confident, then to the first member's order, so the result is deterministic.
    """
    if not labels:
        raise ValueError("an ensemble needs at least one member's answer")
    totals: dict[str, float] = {}
    best_confidence: dict[str, float] = {}
    for label, confidence, weight in zip(labels, confidences, weights, strict=True):
        totals[label] = totals.get(label, 0.0) + weight
        best_confidence[label] = max(best_confidence.get(label, 0.0), confidence)
    mass = sum(totals.values())
    order = {label: index for index, label in reversed(list(enumerate(labels)))}
    winner = max(totals, key=lambda label: (totals[label], best_confidence[label], -order[label]))
    winning = [c for label, c in zip(labels, confidences, strict=True) if label == winner]
    return Combined(
        label=winner,
        confidence=totals[winner] / mass if mass > 0 else 0.0,
        vote_entropy=vote_entropy(labels, weights),
        probability_spread=float(max(winning) - min(winning)),
    )


def plurality(labels: Sequence[str]) -> Combined:
    """The most frequent equal answer wins (discrete answers); ties go to the earliest member's answer."""
    if not labels:
        raise ValueError("an ensemble needs at least one member's answer")
    counts = Counter(labels)
    top = max(counts.values())
    winner = next(label for label in labels if counts[label] == top)
    return Combined(
        label=winner,
        confidence=top / len(labels),
        vote_entropy=vote_entropy(labels),
        probability_spread=0.0,
    )
