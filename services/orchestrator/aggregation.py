"""Combining an ensemble's answers, and measuring how much its members disagree.

Pure logic, no gRPC. Four rules: the mean of the members' class probabilities (optionally
weighted), a weighted vote over their winning classes, the plurality of equal discrete answers,
and, for scored discrete answers with several candidates each (grids), the best score. Every
candidate of every member is also ranked, so that a client with several attempts gets the next
best distinct answers. Disagreement is the entropy of the vote (0 when all agree) and the spread of the
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


@dataclass(frozen=True)
class Offered:
    """One candidate answer one member (a step, or a search call) offered."""

    label: str
    confidence: float
    # The member's weight in the vote (1 unless the plan weighs its steps).
    weight: float
    # Which member offered it, in the order they are listed: ties go to the earlier one.
    member: int
    # Its rank among the member's candidates; 0 is the member's own answer.
    rank: int


# How many alternatives a response carries beyond its answer.
MAX_ALTERNATIVES = 4

# What ranks a distinct answer first, per rule: the members' weight behind it as their own
# answer (a vote), its best confidence, or the weight of every member that offered it at all.
_RANKINGS = {
    "plurality": lambda s: (-s["votes"], -s["best"], s["first"]),
    "weighted_vote": lambda s: (-s["weighted_votes"], -s["best"], s["first"]),
    "best_score": lambda s: (-s["best"], -s["support"], s["first"]),
    "score_vote": lambda s: (-s["score_mass"], -s["best"], s["first"]),
}


def rank_offered(offered: Sequence[Offered], rule: str) -> list[tuple[str, float]]:
    """Every distinct answer offered, best first under ``rule`` ("plurality", "weighted_vote",
    "best_score" or "score_vote", the last a vote weighted by confidence), each with its best
    confidence. A member's further candidates count for "best_score" and "score_vote"; only its
    own answer is a vote under "plurality" and "weighted_vote"."""
    stats: dict[str, dict] = {}
    counted: set[tuple[str, int]] = set()
    for o in offered:
        s = stats.setdefault(
            o.label, {"votes": 0, "weighted_votes": 0.0, "best": 0.0, "support": 0.0, "score_mass": 0.0, "first": (o.member, o.rank)}
        )
        s["best"] = max(s["best"], o.confidence)
        s["first"] = min(s["first"], (o.member, o.rank))
        if o.rank == 0:
            s["votes"] += 1
            s["weighted_votes"] += o.weight
        if (o.label, o.member) not in counted:  # a member supports an answer once
            counted.add((o.label, o.member))
            s["support"] += o.weight
        s["score_mass"] += o.weight * o.confidence
    ranking = _RANKINGS[rule]
    return [(label, s["best"]) for label, s in sorted(stats.items(), key=lambda item: ranking(item[1]))]


def best_score(offered: Sequence[Offered]) -> Combined:
    """AGGREGATION_BEST_SCORE: the candidate with the highest confidence wins; among equals the one
    the most member weight offered, then the earliest member's. The confidence is the winner's."""
    if not offered:
        raise ValueError("an ensemble needs at least one member's answer")
    label, confidence = rank_offered(offered, "best_score")[0]
    own = [o for o in offered if o.rank == 0]
    return Combined(
        label=label,
        confidence=confidence,
        vote_entropy=vote_entropy([o.label for o in own], [o.weight for o in own]),
        probability_spread=0.0,
    )


def alternatives_to(answer: str, offered: Sequence[Offered], rule: str) -> list[tuple[str, float]]:
    """The next best distinct answers after ``answer`` under ``rule``, at most MAX_ALTERNATIVES."""
    return [ranked for ranked in rank_offered(offered, rule) if ranked[0] != answer][:MAX_ALTERNATIVES]
