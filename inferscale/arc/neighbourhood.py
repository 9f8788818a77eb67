"""The neighbourhood family of ARC solvers: each cell's output colour from its 3x3 neighbourhood.

A cell is described by features of its 3x3 neighbourhood: its own colour, each neighbour's
colour and kind (background, filled or outside the grid), how many neighbours are filled, and
its row's and column's parity. A rule is a table from the values of a few features to the colour
the cell becomes, learned from the training pairs, which must all keep their size. The search
tries one feature, then two, then three (the cell's own colour and two more), and keeps the
smallest sets whose table is consistent (one output colour per value on every training pair) and
has seen every value the test input shows: a value it never saw could become anything. Among the
smallest such sets, the answer that most of them agree on ranks first.

**Bound.** The training cells are first reduced to their distinct feature rows (at most
16 x 900 of them), and at most 30 + 435 + 406 feature sets are tried, each one sort over those
rows; the search stops at the first size with a consistent set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np

from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

# The value a neighbour outside the grid reads as, beside the colours 0-9.
OUTSIDE = 10
# Every feature's values lie below this, so a set of them packs into one integer per cell.
BASE = 12
# (row, column) offsets of the 8 neighbours, the 4 orthogonal ones first.
OFFSETS = ((-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
DIRECTIONS = (
    "above",
    "left",
    "right",
    "below",
    "above left",
    "above right",
    "below left",
    "below right",
)
FEATURES = (
    "colour",
    *(f"colour {d}" for d in DIRECTIONS),
    *(f"kind {d}" for d in DIRECTIONS),
    "filled 4-neighbours",
    "filled 8-neighbours",
    "row parity",
    "column parity",
    "row mod 3",
    "column mod 3",
    "on the border",
    "is background",
    "same-colour 4-neighbours",
    "filled colour among 4-neighbours",
    "filled colour among diagonal neighbours",
    "filled colour among 8-neighbours",
)
# How many features a rule may read at most: more would fit noise on a few training pairs.
MOST_FEATURES = 3
# Of the smallest consistent sets, how many rules the family offers.
RULES_OFFERED = 6


def _filled_colour(around: np.ndarray, background: int) -> np.ndarray:
    """Per cell, the one filled colour among the given neighbours: the background where there is
    none, ``OUTSIDE + 1`` where there are several."""
    filled = (around != background) & (around != OUTSIDE)
    lowest = np.where(filled, around, OUTSIDE).min(axis=0)
    highest = np.where(filled, around, -1).max(axis=0)
    return np.where(
        ~filled.any(axis=0), background, np.where(lowest == highest, lowest, OUTSIDE + 1)
    )


def features(grid: np.ndarray) -> np.ndarray:
    """Every feature of every cell, [cells, len(FEATURES)], each value below ``BASE``."""
    h, w = grid.shape
    padded = np.full((h + 2, w + 2), OUTSIDE, dtype=np.int64)
    padded[1:-1, 1:-1] = grid
    around = np.stack([padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in OFFSETS])
    background = background_colour(grid)
    kinds = np.where(around == OUTSIDE, 2, (around != background).astype(np.int64))
    filled = kinds == 1
    rows, cols = np.indices(grid.shape)
    columns = [
        grid,
        *around,
        *kinds,
        filled[:4].sum(axis=0),
        filled.sum(axis=0),
        rows % 2,
        cols % 2,
        rows % 3,
        cols % 3,
        (rows == 0) | (cols == 0) | (rows == h - 1) | (cols == w - 1),
        grid == background,
        (around[:4] == grid).sum(axis=0),
        _filled_colour(around[:4], background),
        _filled_colour(around[4:], background),
        _filled_colour(around, background),
    ]
    return np.stack([np.asarray(c, dtype=np.int64).ravel() for c in columns], axis=1)


def pack(values: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """One integer per row from the chosen feature columns."""
    code = np.zeros(values.shape[0], dtype=np.int64)
    for column in chosen:
        code = code * BASE + values[:, column]
    return code


def feature_sets() -> list[tuple[int, ...]]:
    """The sets tried, smallest first: any one or two features, or the cell's colour and two more."""
    others = range(1, len(FEATURES))
    return [
        *((f,) for f in range(len(FEATURES))),
        *combinations(range(len(FEATURES)), 2),
        *((0, *pair) for pair in combinations(others, 2)),
    ]


def table_rule(
    chosen: tuple[int, ...],
    keys: np.ndarray,
    colours: np.ndarray,
    describe: Callable[[np.ndarray], np.ndarray] = features,
) -> Rule:
    """The rule that looks up each cell's packed features (as ``describe`` finds them) in the
    table (sorted ``keys`` to ``colours``); None for a grid with a value the table lacks."""

    def rule(grid: np.ndarray) -> np.ndarray | None:
        code = pack(describe(grid), chosen)
        where = np.minimum(np.searchsorted(keys, code), len(keys) - 1)
        if (keys[where] != code).any():
            return None
        return colours[where].astype(np.int8).reshape(grid.shape)

    return rule


def held_out_reproduced(chosen: tuple[int, ...], per_pair: Sequence[np.ndarray]) -> int:
    """How many training pairs the table learned from the other pairs alone reproduces: a set
    that only memorises its pairs reproduces none, one that generalises reproduces them all."""
    reproduced = 0
    for index, rows in enumerate(per_pair):
        others = np.concatenate([r for i, r in enumerate(per_pair) if i != index] or [rows[:0]])
        if not others.size:
            continue
        keys, first = np.unique(pack(others, chosen), return_index=True)
        code = pack(rows, chosen)
        where = np.minimum(np.searchsorted(keys, code), len(keys) - 1)
        reproduced += bool(
            (keys[where] == code).all() and (others[first, -1][where] == rows[:, -1]).all()
        )
    return reproduced


def neighbourhood_rules(
    train: Sequence[tuple[Grid, Grid]], test_input: Grid
) -> list[tuple[str, Rule]]:
    """The tables over the smallest consistent feature sets that cover the test input; first the
    sets that best predict each training pair from the others, then the answer most sets give."""
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    if any(source.shape != target.shape for source, target in pairs):
        return []
    # Each pair's distinct cells, its output colour in the last column.
    described = PerGrid(features)
    per_pair = [
        np.unique(np.column_stack([described(s), t.ravel().astype(np.int64)]), axis=0)
        for s, t in pairs
    ]
    rows = np.unique(np.concatenate(per_pair), axis=0)
    known, colours = rows[:, :-1], rows[:, -1]
    if (known[:, 0] == colours).all():
        return []
    test = described(as_array(test_input))
    found: list[tuple[tuple[int, ...], np.ndarray, np.ndarray, bytes, int]] = []
    for chosen in feature_sets():
        # A larger set is tried only while no smaller one predicts every pair from the others.
        if found and len(chosen) > len(found[-1][0]) and max(f[4] for f in found) == len(pairs):
            break
        code = pack(known, chosen)
        keys, first = np.unique(code, return_index=True)
        if len(np.unique(code * 10 + colours)) != len(keys):
            continue
        test_code = pack(test, chosen)
        if not np.isin(test_code, keys).all():
            continue
        answer = colours[first][np.searchsorted(keys, test_code)].tobytes()
        found.append((chosen, keys, colours[first], answer, held_out_reproduced(chosen, per_pair)))
    support = Counter(f[3] for f in found)
    # A set that predicts no pair from the others has only memorised them.
    generalising = [f for f in found if f[4] > 0]
    ranked = sorted(generalising, key=lambda f: (-f[4], len(f[0]), -support[f[3]]))[:RULES_OFFERED]
    return [
        (
            f"each cell by its {', '.join(FEATURES[c] for c in chosen)}",
            table_rule(chosen, keys, table, described),
        )
        for chosen, keys, table, *_ in ranked
    ]


def neighbourhood_candidates(
    train: Sequence[tuple[Grid, Grid]], test_input: Grid
) -> list[Candidate]:
    """The consistent neighbourhood tables that cover the test input, best score first, one per grid."""
    return candidates_from_rules(train, test_input, neighbourhood_rules(train, test_input))
