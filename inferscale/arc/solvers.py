"""ARC solvers: pure functions from a task's training pairs and a test input to candidate grids.

Each candidate carries a score grounded in the training pairs: the mean, over the pairs, of the
fraction of output cells the candidate's rule reproduces (0 for a pair whose output size it gets
wrong), so 1.0 means every training pair is reproduced exactly. A bandit needs that gradient:
exact matches alone would score almost everything 0.

The geometric family: one of the eight symmetries of the square (rotations, reflections,
transposes), then a colour substitution learned from the pairs (colours it never saw stay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from inferscale.arc.tasks import MAX_SIDE, Grid

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
    """The colour substitution that the most cells agree on, per input colour (ties: the colour
    kept, else the lowest). Pairs whose sizes differ teach nothing."""
    counts = np.zeros(100, dtype=np.int64)
    for source, target in pairs:
        if source.shape == target.shape:
            counts += np.bincount(source.ravel().astype(np.int64) * 10 + target.ravel(), minlength=100)
    table = counts.reshape(10, 10)
    learned = {}
    for colour in np.nonzero(table.sum(axis=1))[0].tolist():
        row = table[colour]
        learned[colour] = colour if row[colour] == row.max() else int(row.argmax())
    return learned


def recolour(grid: np.ndarray, colours: dict[int, int]) -> np.ndarray:
    if not colours:
        return grid
    lookup = np.arange(10, dtype=np.int8)
    for a, b in colours.items():
        lookup[a] = b
    return lookup[grid]


def score(predicted: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """Mean cell agreement over the pairs; a pair of the wrong size scores 0."""
    parts = [float((p == e).mean()) if p.shape == e.shape else 0.0 for p, e in zip(predicted, expected, strict=True)]
    return sum(parts) / len(parts)


Rule = Callable[[np.ndarray], "np.ndarray | None"]


def candidates_from_rules(
    train: Sequence[tuple[Grid, Grid]], test_input: Grid, rules: Iterable[tuple[str, Rule]]
) -> list[Candidate]:
    """Runs each rule on the training inputs and the test input; a rule that returns None or
    fails on any of them is dropped. A colour substitution learned from the rule's outputs
    follows it. Best score first, one candidate per distinct grid; among
    equals the simpler first (no colour substitution), then the earlier rule."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    test = as_array(test_input)
    found: dict[Grid, tuple[Candidate, int]] = {}
    for order, (name, rule) in enumerate(rules):
        try:
            moved = [rule(i) for i in inputs]
            answered = rule(test)
        except (ValueError, IndexError):
            continue
        if answered is None or any(m is None for m in moved) or not _fits(answered):
            continue
        colours = learn_colours(list(zip(moved, outputs, strict=True)))
        rule_score = score([recolour(m, colours) for m in moved], outputs)
        grid = as_grid(recolour(answered, colours))
        if grid not in found or found[grid][0].score < rule_score:
            coloured = any(a != b for a, b in colours.items())
            found[grid] = (Candidate(grid, rule_score, name + (" + colours" if coloured else "")), order)
    return simplest_first(found)


def simplest_first(found: dict[Grid, tuple[Candidate, int]]) -> list[Candidate]:
    """Candidates best score first; among equals one that needs no colour substitution, then the
    one found first (the earlier rule, the shorter program): the simpler explanation."""
    ranked = sorted(found.values(), key=lambda pair: (-pair[0].score, pair[0].rule.endswith(" + colours"), pair[1]))
    return [candidate for candidate, _ in ranked]


def _fits(grid: np.ndarray) -> bool:
    return grid.ndim == 2 and 1 <= grid.shape[0] <= MAX_SIDE and 1 <= grid.shape[1] <= MAX_SIDE


def geometric_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """Every symmetry with its learned colours, best score first, one candidate per distinct grid."""
    return candidates_from_rules(train, test_input, SYMMETRIES.items())
