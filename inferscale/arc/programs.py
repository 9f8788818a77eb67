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

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

from inferscale.arc.objects import SELECTORS, content, select_and_cut
from inferscale.arc.solvers import SYMMETRIES, Candidate, Rule, as_array, as_grid, learn_colours, recolour, score, simplest_first
from inferscale.arc.tasks import MAX_SIDE, Grid
from inferscale.arc.tiling import background_colour, block_reduce

# How many of a depth's best programs the next depth extends, from depth 3 on.
BEAM = 40


def gravity(grid: np.ndarray, turns: int) -> np.ndarray:
    """Every non-background cell falls down (after ``turns`` quarter turns, then back)."""
    background = background_colour(grid)
    turned = np.rot90(grid, turns)
    fallen = np.full_like(turned, background)
    for c in range(turned.shape[1]):
        column = turned[:, c]
        kept = column[column != background]
        if kept.size:
            fallen[-kept.size :, c] = kept
    return np.rot90(fallen, -turns)


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
    background = background_colour(grid)
    enclosed = ndimage.binary_fill_holes(grid != background) & (grid == background)
    return np.where(enclosed, np.int8(colour), grid)


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
    found += [(f"gravity {d}", lambda g, t=t: gravity(g, t)) for t, d in enumerate(("down", "right", "up", "left"))]
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


def _apply(rule: Rule, grids: Sequence[np.ndarray]) -> tuple[np.ndarray, ...] | None:
    out = []
    for grid in grids:
        try:
            moved = rule(grid)
        except (ValueError, IndexError):
            return None
        if moved is None or moved.ndim != 2 or not (1 <= moved.shape[0] <= MAX_SIDE and 1 <= moved.shape[1] <= MAX_SIDE):
            return None
        out.append(moved.astype(np.int8, copy=False))
    return tuple(out)


def _fingerprint(grids: Sequence[np.ndarray]) -> bytes:
    return b"|".join(bytes(g.shape) + g.tobytes() for g in grids)


def search(train: Sequence[tuple[Grid, Grid]], test_input: Grid, depth: int, beam: int = BEAM) -> Iterator[Candidate]:
    """Every program up to ``depth`` primitives (beam-limited from depth 3), scored; the caller ranks."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    dsl = primitives(train)
    start = (*inputs, as_array(test_input))
    seen = {_fingerprint(start)}
    frontier: list[tuple[float, str, tuple[np.ndarray, ...]]] = [(0.0, "", start)]
    for level in range(1, depth + 1):
        if level >= 3:
            frontier = sorted(frontier, key=lambda f: -f[0])[:beam]
        reached = []
        for _, name, grids in frontier:
            for step, rule in dsl:
                moved = _apply(rule, grids)
                if moved is None:
                    continue
                key = _fingerprint(moved)
                if key in seen:
                    continue
                seen.add(key)
                colours = learn_colours(list(zip(moved[:-1], outputs, strict=True)))
                program_score = score([recolour(m, colours) for m in moved[:-1]], outputs)
                program = f"{name}, then {step}" if name else step
                coloured = " + colours" if any(a != b for a, b in colours.items()) else ""
                yield Candidate(as_grid(recolour(moved[-1], colours)), program_score, program + coloured)
                reached.append((program_score, program, moved))
        frontier = reached


def program_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid, depth: int) -> list[Candidate]:
    """The answers of every program up to ``depth``, best score first (among equals the simpler:
    without colour substitution, then the shorter program), one per distinct grid."""
    found: dict[Grid, tuple[Candidate, int]] = {}
    for order, candidate in enumerate(search(train, test_input, depth)):
        if candidate.grid not in found or found[candidate.grid][0].score < candidate.score:
            found[candidate.grid] = (candidate, order)
    return simplest_first(found)


def depth_1(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 1)


def depth_2(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 2)


def depth_3(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    return program_candidates(train, test_input, 3)
