"""Adaptive multi-model search for discrete answers: which model to call next, and whether to ask
it for a new answer or to refine the best one so far.

Pure logic, no gRPC. The idea is that of adaptive-branching tree search (AB-MCTS, Inoue et al.,
2025): at every call, go wider (a fresh answer) or deeper (refine the best answer), and across
several models, chosen by Thompson sampling from what the answers scored so far. Each (model,
action) pair is an arm with a Beta posterior over its score; a score in [0, 1] (the answer's
confidence) counts as that fraction of a success. A model that cannot sample (deterministic)
gives a new answer once (a sampling model's first answer is its plain one, later ones fresh
samples); a model refines only if it declares a refinement input, and refines the best answer
of the other models that it has not refined yet: a refiner takes the answer as evidence, and its
own answer is evidence it already has (a product-of-experts refiner fed its own output would
count it twice and grow surer with every round).

The final answer is the score-weighted vote of every answer: each label's total score, the
largest winning. Its confidence is that total divided by the number of calls, so that one call
scoring 0.6 reports 0.6, and three agreeing calls report their mean score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

SAMPLE = "sample"
REFINE = "refine"


@dataclass(frozen=True)
class SearchMember:
    """A model the search may call: what it can do and what a call costs."""

    samples: bool
    refines: bool
    cost: float


@dataclass
class Arm:
    """One (member, action) pair and the Beta posterior of the scores its calls earned."""

    member: int
    action: str
    alpha: float = 1.0
    beta: float = 1.0
    calls: int = 0

    @property
    def mean_score(self) -> float:
        """The posterior mean of the arm's score."""
        return self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True)
class Candidate:
    """An answer the search found: its label, its score and the call that made it (from 0)."""

    label: str
    score: float
    call: int
    # The member (index into the search's members) that answered.
    member: int


@dataclass
class AdaptiveSearch:
    """The state of one request's search: arms, answers so far, and the random draws."""

    members: Sequence[SearchMember]
    rng: np.random.Generator
    arms: list[Arm] = field(init=False)
    candidates: list[Candidate] = field(default_factory=list)
    # (member, call) pairs already refined: a deterministic model refines an answer once.
    _refined: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.arms = [Arm(index, SAMPLE) for index in range(len(self.members))]
        self.arms += [Arm(index, REFINE) for index, member in enumerate(self.members) if member.refines]

    def to_refine(self, member: int) -> Candidate | None:
        """What ``member`` would refine: the highest-scoring answer (the earliest among equals) of
        the other members that it has not refined yet; None if there is none."""
        return max(
            (c for c in self.candidates if c.member != member and (member, c.call) not in self._refined),
            key=lambda c: (c.score, -c.call),
            default=None,
        )

    def available(self, arm: Arm, budget_left: float | None = None) -> bool:
        """Whether the arm can make a call that may add something, within the cost left."""
        member = self.members[arm.member]
        if budget_left is not None and member.cost > budget_left:
            return False
        if arm.action == SAMPLE:
            return member.samples or arm.calls == 0
        return self.to_refine(arm.member) is not None

    def next_arm(self, budget_left: float | None = None) -> Arm | None:
        """Draws a score from each available arm's posterior and returns the highest (the cheaper
        among equal draws); None when no arm can add anything."""
        choices = [arm for arm in self.arms if self.available(arm, budget_left)]
        if not choices:
            return None
        draws = [float(self.rng.beta(arm.alpha, arm.beta)) for arm in choices]
        return max(zip(draws, choices, strict=True), key=lambda pair: (pair[0], -self.members[pair[1].member].cost))[1]

    def observe(self, arm: Arm, label: str, score: float, refined: Candidate | None = None) -> Candidate:
        """Records a call's answer and updates its arm's posterior; ``refined`` is the answer it refined."""
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score {score} is outside [0, 1]")
        arm.calls += 1
        arm.alpha += score
        arm.beta += 1.0 - score
        if refined is not None:
            self._refined.add((arm.member, refined.call))
        candidate = Candidate(label, score, len(self.candidates), arm.member)
        self.candidates.append(candidate)
        return candidate

    def fail(self, arm: Arm) -> None:
        """Records a call that failed: it counts against the arm as a score of 0."""
        arm.calls += 1
        arm.beta += 1.0

    def answer(self) -> tuple[Candidate, float]:
        """The winning label's best-scoring answer, and the search's confidence in the label.

        Raises ValueError before any answer."""
        if not self.candidates:
            raise ValueError("the search has no answer yet")
        totals: dict[str, float] = {}
        for candidate in self.candidates:
            totals[candidate.label] = totals.get(candidate.label, 0.0) + candidate.score
        # The highest total wins; among equal totals, the label found first.
        first_seen = {c.label: c.call for c in reversed(self.candidates)}
        label = max(totals, key=lambda name: (totals[name], -first_seen[name]))
        chosen = max((c for c in self.candidates if c.label == label), key=lambda c: (c.score, -c.call))
        return chosen, totals[label] / len(self.candidates)

    def label_weights(self) -> tuple[list[str], list[float]]:
        """Every answer's label and score, for the vote entropy the response reports."""
        return [c.label for c in self.candidates], [c.score for c in self.candidates]
