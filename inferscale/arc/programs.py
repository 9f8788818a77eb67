"""The program-search family of ARC solvers: compositions of grid primitives, searched by depth.

A program is a sequence of primitives (symmetries, crops, scalings, tilings, gravity, halves and
their overlays, hole filling, colour removal, ...) followed by a colour substitution learned
from the training pairs. The search runs breadth first: depth 1 tries every primitive, depth 2
every pair, and from depth 3 on only the ``beam`` best programs of the depth before are extended,
so that the cost grows about linearly with depth. Programs that do the same thing to every
training and test input are searched once. Each distinct answer keeps its best program's score
on the training pairs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inferscale.arc.objects import SELECTORS, content, select_and_cut
from inferscale.arc.solvers import (
    SYMMETRIES,
    Candidate,
    Rule,
    as_array,
    as_grid,
    learn_colours,
    recolour,
    score,
    simplest_first,
)
from inferscale.arc.tasks import MAX_SIDE, Grid
from inferscale.arc.tiling import background_colour, block_reduce

# How many of a depth's best programs the next depth extends, from depth 3 on.
BEAM = 40
# How many primitive results one search remembers (see ``_Applied``).
MAX_REMEMBERED = 25_000


def gravity(grid: np.ndarray, turns: int) -> np.ndarray:
    """Every non-background cell falls down (after ``turns`` quarter turns, then back)."""
    turned = np.rot90(grid, turns)
    # A stable sort of each column by "is filled" puts its background cells first and keeps the
    # filled ones in their order: each column's cells fallen to its bottom, in one call.
    order = np.argsort(turned != background_colour(grid), axis=0, kind="stable")
    return np.rot90(np.take_along_axis(turned, order, axis=0), -turns)


def halves(grid: np.ndarray, across: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The two halves of a grid, split by a middle line of one colour when it has one, else in
    the middle (None for an odd size without a line); ``across`` splits left from right."""
    g = grid.T if across else grid
    h = g.shape[0]
    if h % 2 == 1 and h > 1 and (g[h // 2] == g[h // 2, 0]).all():
        top, bottom = g[: h // 2], g[h // 2 + 1 :]
    elif h % 2 == 0 and h > 1:
        top, bottom = g[: h // 2], g[h // 2 :]
    else:
        return None
    return (top.T, bottom.T) if across else (top, bottom)


def overlay(grid: np.ndarray, across: bool, how: str) -> np.ndarray | None:
    """The halves' cells that are not background, combined cell by cell: 1 where ``how`` holds."""
    split = halves(grid, across)
    if split is None:
        return None
    a, b = (part != background_colour(grid) for part in split)
    result = {"and": a & b, "or": a | b, "xor": a ^ b, "neither": ~a & ~b, "first only": a & ~b}[how]
    return result.astype(np.int8)


def fill_holes(grid: np.ndarray, colour: int) -> np.ndarray:
    """The background cells that filled cells enclose, painted ``colour``."""
    return np.where(_enclosed(grid.shape, grid.astype(np.int8, copy=False).tobytes()), np.int8(colour), grid)


@functools.lru_cache(maxsize=4096)
def _enclosed(shape: tuple[int, ...], cells: bytes) -> np.ndarray:
    """Which background cells the filled ones enclose. Remembered by content (at most 4096 grids,
    a few MB): the search fills the same grid's holes with every colour of the task in turn."""
    grid = np.frombuffer(cells, dtype=np.int8).reshape(shape)
    background = background_colour(grid)
    mask = ndimage.binary_fill_holes(grid != background) & (grid == background)
    mask.flags.writeable = False
    return mask


def drop_repeats(grid: np.ndarray) -> np.ndarray:
    """Each run of equal rows, then of equal columns, kept once."""
    rows = grid[np.r_[True, (grid[1:] != grid[:-1]).any(axis=1)]]
    return rows[:, np.r_[True, (rows[:, 1:] != rows[:, :-1]).any(axis=0)]]


def drop_empty(grid: np.ndarray) -> np.ndarray | None:
    """The rows and columns that hold something other than the background."""
    filled = grid != background_colour(grid)
    kept = grid[filled.any(axis=1)][:, filled.any(axis=0)]
    return kept if kept.size else None


def primitives(train: Sequence[tuple[Grid, Grid]]) -> list[tuple[str, Rule]]:
    """The DSL for one task: the fixed primitives, and those taking a colour the task uses."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    input_colours = set.union(*(set(np.unique(i).tolist()) for i in inputs))
    new_colours = set.union(*(set(np.unique(o).tolist()) for o in outputs)) - input_colours
    found: list[tuple[str, Rule]] = [(name, f) for name, f in SYMMETRIES.items() if name != "identity"]
    found += [
        ("crop to content", content),
        ("scale up 2", lambda g: np.kron(g, np.ones((2, 2), np.int8))),
        ("scale up 3", lambda g: np.kron(g, np.ones((3, 3), np.int8))),
        ("scale down 2", lambda g: block_reduce(g, (2, 2), "first")),
        ("scale down 3", lambda g: block_reduce(g, (3, 3), "first")),
        ("tile 2x2", lambda g: np.tile(g, (2, 2))),
        ("mirror right", lambda g: np.concatenate([g, g[:, ::-1]], axis=1)),
        ("mirror down", lambda g: np.concatenate([g, g[::-1]], axis=0)),
        ("repeat right", lambda g: np.concatenate([g, g], axis=1)),
        ("repeat down", lambda g: np.concatenate([g, g], axis=0)),
        ("drop repeated rows and columns", drop_repeats),
        ("drop empty rows and columns", drop_empty),
        ("largest object", select_and_cut(SELECTORS["largest"], True, False, False)),
        ("smallest object", select_and_cut(SELECTORS["smallest"], True, False, False)),
    ]
    found += [(f"gravity {d}", lambda g, t=t: gravity(g, t)) for t, d in enumerate(("down", "left", "up", "right"))]
    for across, side in ((False, "top"), (True, "left")):
        found.append((f"{side} half", lambda g, a=across: _half(g, a, 0)))
        found.append((f"{'bottom' if side == 'top' else 'right'} half", lambda g, a=across: _half(g, a, 1)))
        for how in ("and", "or", "xor", "neither", "first only"):
            found.append((f"{how} of the {side} and other halves", lambda g, a=across, h=how: overlay(g, a, h)))
    found += [(f"fill holes with {c}", lambda g, c=c: fill_holes(g, c)) for c in sorted(new_colours | input_colours)]
    found += [(f"remove colour {c}", lambda g, c=c: np.where(g == c, np.int8(background_colour(g)), g)) for c in sorted(input_colours)]
    found += [(f"keep colour {c}", lambda g, c=c: np.where(g == c, g, np.int8(background_colour(g)))) for c in sorted(input_colours)]
    return found


def _half(grid: np.ndarray, across: bool, which: int) -> np.ndarray | None:
    split = halves(grid, across)
    return None if split is None else split[which]


@dataclass
class Searched:
    """What one search found: its candidates, and how much it ran."""

    # Best score first, one per distinct answer to the test input (see ``program_candidates``).
    candidates: list[Candidate]
    # The distinct programs run on every input (two that do the same to every input count once).
    programs: int
    # Programs of the last depth set aside after the training inputs, because none of their results
    # had its output's size (not deduplicated: two such programs that do the same count twice).
    pruned: int


class _Applied:
    """Each primitive's result on each grid content it met, computed once per search.

    Many programs leave some input as it was (removing a colour it lacks, say), so deeper
    programs meet the same grids again and again: a primitive's result is looked up by the grid's
    content rather than computed anew. At most ``MAX_REMEMBERED`` results are kept, which bounds
    the memory one request can hold: an entry holds a grid's cells in its key and a result, under
    2 KB for 30 by 30 grids, so about 50 MB at most.
    """

    def __init__(self, dsl: Sequence[tuple[str, Rule]]) -> None:
        self._rules = [rule for _, rule in dsl]
        self._results: dict[tuple[int, bytes], np.ndarray | None] = {}

    def __call__(self, step: int, grid: np.ndarray) -> np.ndarray | None:
        key = (step, bytes(grid.shape) + grid.tobytes())
        if key in self._results:
            return self._results[key]
        try:
            moved = self._rules[step](grid)
        except (ValueError, IndexError):
            moved = None
        if moved is not None and (moved.ndim != 2 or not (1 <= moved.shape[0] <= MAX_SIDE and 1 <= moved.shape[1] <= MAX_SIDE)):
            moved = None
        if moved is not None:
            moved = moved.astype(np.int8, copy=False)
        if len(self._results) < MAX_REMEMBERED:
            self._results[key] = moved
        return moved


def _fingerprint(grids: Sequence[np.ndarray]) -> bytes:
    return b"|".join(bytes(g.shape) + g.tobytes() for g in grids)


def search(train: Sequence[tuple[Grid, Grid]], test_input: Grid, depth: int, beam: int = BEAM) -> Searched:
    """Every program up to ``depth`` primitives (beam-limited from depth 3), scored, its answers ranked.

    A program whose results on the training inputs all differ in size from the outputs scores 0
    whatever colours follow: it is kept to be extended, but is no candidate, and at the last depth,
    where nothing extends it, it is not run on the other inputs at all."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    sizes = [o.shape for o in outputs]
    dsl = primitives(train)
    applied = _Applied(dsl)
    start = (*inputs, as_array(test_input))
    seen = {_fingerprint(start)}
    # Each distinct answer to the test input: its best (score, program, order of finding).
    found: dict[bytes, tuple[float, str, int, np.ndarray]] = {}
    frontier: list[tuple[float, str, tuple[np.ndarray, ...]]] = [(0.0, "", start)]
    programs = pruned = 0
    for level in range(1, depth + 1):
        last = level == depth
        if level >= 3:
            frontier = sorted(frontier, key=lambda f: -f[0])[:beam]
        reached = []
        for _, name, grids in frontier:
            for index, (step, _) in enumerate(dsl):
                moved = _run(applied, index, grids, sizes, last)
                if moved is None:
                    continue
                if not moved:
                    pruned += 1
                    continue
                key = _fingerprint(moved)
                if key in seen:
                    continue
                seen.add(key)
                programs += 1
                program = f"{name}, then {step}" if name else step
                program_score = 0.0
                if _reaches_a_size(moved[:-1], sizes):
                    colours = learn_colours(list(zip(moved[:-1], outputs, strict=True)))
                    program_score = score([recolour(m, colours) for m in moved[:-1]], outputs)
                    answer = recolour(moved[-1], colours)
                    coloured = " + colours" if any(a != b for a, b in colours.items()) else ""
                    answer_key = bytes(answer.shape) + answer.tobytes()
                    if answer_key not in found or found[answer_key][0] < program_score:
                        found[answer_key] = (program_score, program + coloured, programs, answer)
                if not last:
                    reached.append((program_score, program, moved))
        frontier = reached
    ranked = {
        as_grid(answer): (Candidate(as_grid(answer), program_score, program), order)
        for program_score, program, order, answer in found.values()
    }
    return Searched(simplest_first(ranked), programs, pruned)


def _run(
    applied: _Applied, step: int, grids: Sequence[np.ndarray], sizes: Sequence[tuple[int, ...]], last: bool
) -> tuple[np.ndarray, ...] | None:
    """A primitive's results on every input (the test input last); None where it fails on any,
    and at the last depth () where no training result has its output's size."""
    train = []
    for grid in grids[:-1]:
        moved = applied(step, grid)
        if moved is None:
            return None
        train.append(moved)
    if last and not _reaches_a_size(train, sizes):
        return ()
    test = applied(step, grids[-1])
    return None if test is None else (*train, test)


def _reaches_a_size(train_results: Sequence[np.ndarray], sizes: Sequence[tuple[int, ...]]) -> bool:
    """Whether any training result has its output's size: else the program scores 0."""
    return any(m.shape == size for m, size in zip(train_results, sizes, strict=True))


def program_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid, depth: int) -> list[Candidate]:
    """The answers of every program up to ``depth`` that reproduces at least one training output's
    size, best score first (among equals the simpler: without colour substitution, then the shorter
    program), one per distinct grid. A program that reproduces no output's size scores 0 whatever
    it answers, and is no candidate."""
    return search(train, test_input, depth).candidates


def depth_1(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 1)


def depth_2(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 2)


def depth_3(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 3)
