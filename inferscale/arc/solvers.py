"""ARC solvers: pure functions from a task's training pairs and a test input to candidate grids.

Each candidate carries a score grounded in the training pairs: the mean, over the pairs, of the
fraction of output cells the candidate's rule reproduces (0 for a pair whose output size it gets
wrong), so 1.0 means every training pair is reproduced exactly. A bandit needs that gradient:
exact matches alone would score almost everything 0.

The geometric family: one of the eight symmetries of the square (rotations, reflections,
transposes), then a colour substitution learned from the pairs (colours it never saw stay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inferscale.arc.tasks import Grid

SYMMETRIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda g: g,
    "rotate 90": lambda g: np.rot90(g, -1),
    "rotate 180": lambda g: np.rot90(g, 2),
    "rotate 270": lambda g: np.rot90(g, 1),
    "flip rows": lambda g: g[::-1, :],
    "flip columns": lambda g: g[:, ::-1],
    "transpose": lambda g: g.T,
    "anti-transpose": lambda g: np.rot90(g, 2).T,
}


@dataclass(frozen=True)
class Candidate:
    """A candidate answer: the grid, its score on the training pairs, and the rule that made it."""

    grid: Grid
    score: float
    rule: str


def as_array(grid: Grid) -> np.ndarray:
    return np.asarray(grid, dtype=np.int8)


def as_grid(array: np.ndarray) -> Grid:
    return tuple(tuple(int(cell) for cell in row) for row in array)


def learn_colours(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[int, int]:
    """The colour substitution that the most cells agree on, per input colour (ties: the colour kept)."""
    votes: dict[int, dict[int, int]] = {}
    for source, target in pairs:
        if source.shape != target.shape:
            continue
        for a, b in zip(source.ravel().tolist(), target.ravel().tolist(), strict=True):
            votes.setdefault(a, {}).setdefault(b, 0)
            votes[a][b] += 1
    return {a: max(counts, key=lambda b: (counts[b], b == a)) for a, counts in votes.items()}


def recolour(grid: np.ndarray, colours: dict[int, int]) -> np.ndarray:
    lookup = np.arange(10, dtype=np.int8)
    for a, b in colours.items():
        lookup[a] = b
    return lookup[grid]


def score(predicted: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """Mean cell agreement over the pairs; a pair of the wrong size scores 0."""
    parts = [float((p == e).mean()) if p.shape == e.shape else 0.0 for p, e in zip(predicted, expected, strict=True)]
    return sum(parts) / len(parts)


def geometric_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """Every symmetry with its learned colours, best score first, one candidate per distinct grid."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    found: dict[Grid, Candidate] = {}
    for name, symmetry in SYMMETRIES.items():
        moved = [symmetry(i) for i in inputs]
        colours = learn_colours(list(zip(moved, outputs, strict=True)))
        rule_score = score([recolour(m, colours) for m in moved], outputs)
        grid = as_grid(recolour(symmetry(as_array(test_input)), colours))
        if grid not in found or found[grid].score < rule_score:
            found[grid] = Candidate(grid, rule_score, name + (" + colours" if any(a != b for a, b in colours.items()) else ""))
    return sorted(found.values(), key=lambda c: (-c.score, list(SYMMETRIES).index(c.rule.split(" + ")[0])))
