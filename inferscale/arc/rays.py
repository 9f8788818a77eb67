"""The ray family of ARC solvers: lines drawn from pixels and objects across the background.

A ray leaves a source cell in one of the eight directions and paints the cells it crosses with
the source's colour. What a cell would be painted by is read from what it sees: the nearest wall
in each direction (its source, looking back along the ray) and the nearest one ahead (the ray's
end: the border, a cell of the same colour, or of another). The family learns from the training
pairs, which must keep their size:
- which cells are sources: every filled cell, the cells of one colour, or the lone pixels;
- whether rays stop at the first filled cell they meet, pass over other colours, or paint over
  them (and then whether lines along rows or along columns are drawn last, on top);
- which (direction, end) kinds of ray are drawn: to the border, until a wall, or only between two
  cells of the same colour (a line that connects them).
A kind is drawn when every cell it would paint changes in the training outputs, in the source's
colour where the outputs mostly show it (two crossing rays cannot both win), else in the one
colour they show. Each colour may also learn its own kinds, drawn together (one colour's rays go
down, another's across), with the colour the outputs show where rays of two colours cross. Or an
elbow path joins the single cells of two colours, along a row then a column (or the other way);
or every all-black row and column is drawn in one colour.

**Bound.** For each source choice (at most 11) and mode (3), each wall layout is looked along
once per direction (8) and grid (17), by one cumulative pass over its 900 cells (diagonals by
shearing): O(11 x 3 x 8 x 17 x 900) cell operations, vectorised, and fewer since source choices
share their walls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

# (row, column) steps of the eight directions a ray may travel.
DIRECTIONS = {
    "down": (1, 0),
    "up": (-1, 0),
    "right": (0, 1),
    "left": (0, -1),
    "down right": (1, 1),
    "up left": (-1, -1),
    "down left": (1, -1),
    "up right": (-1, 1),
}
# What a ray meets at its far end, relative to its source.
ENDS = ("border", "same colour", "other colour")
NOTHING = -1


def _nearest_above(colours: np.ndarray) -> np.ndarray:
    """For each cell, the value of the nearest cell strictly above it that is not ``NOTHING``."""
    h = colours.shape[0]
    rows = np.broadcast_to(np.arange(h)[:, None], colours.shape)
    last = np.maximum.accumulate(np.where(colours != NOTHING, rows, -1), axis=0)
    above = np.vstack([np.full((1, colours.shape[1]), -1), last[:-1]])
    picked = np.take_along_axis(colours, np.maximum(above, 0), axis=0)
    return np.where(above >= 0, picked, NOTHING)


def _shear(grid: np.ndarray, anti: bool) -> np.ndarray:
    """The grid with each row shifted so that its diagonals (anti-diagonals) become columns."""
    h, w = grid.shape
    sheared = np.full((h, h + w - 1), NOTHING, dtype=grid.dtype)
    for r in range(h):
        start = r if anti else h - 1 - r
        sheared[r, start : start + w] = grid[r]
    return sheared


def _unshear(sheared: np.ndarray, w: int, anti: bool) -> np.ndarray:
    h = sheared.shape[0]
    return np.stack(
        [sheared[r, (r if anti else h - 1 - r) : (r if anti else h - 1 - r) + w] for r in range(h)]
    )


def nearest(colours: np.ndarray, direction: tuple[int, int]) -> np.ndarray:
    """For each cell, the value of the nearest cell in ``direction`` (row step, column step) that
    is not ``NOTHING``; ``NOTHING`` where the border comes first."""
    dr, dc = direction
    if dr == 0:  # along a row: the same as along a column of the transpose
        return nearest(colours.T, (dc, 0)).T
    if dc == 0:
        return _nearest_above(colours) if dr < 0 else _nearest_above(colours[::-1])[::-1]
    # A diagonal step: rows whose diagonals line up in columns, looked along upwards or downwards.
    anti = dr * dc < 0
    sheared = _shear(colours, anti)
    seen = _nearest_above(sheared) if dr < 0 else _nearest_above(sheared[::-1])[::-1]
    return _unshear(seen, colours.shape[1], anti)


def _sources(grid: np.ndarray, background: int, choice: str) -> np.ndarray:
    """Which cells are sources for a source choice."""
    filled = grid != background
    if choice == "every filled cell":
        return filled
    if choice == "lone pixels":
        padded = np.pad(filled, 1).astype(np.int64)
        around = sum(
            padded[1 + dr : 1 + dr + grid.shape[0], 1 + dc : 1 + dc + grid.shape[1]]
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
        )
        return filled & (around == 1)
    return grid == int(choice.removeprefix("colour "))


def sight(
    grid: np.ndarray, choice: str, mode: str, look: Callable[..., np.ndarray] = nearest
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """For each direction a ray travels and each end: the cells such a ray paints and the colour
    of the source each would be painted with. In ``MODES`` order: "stop" rays end at the first
    filled cell; "pass" rays pass over other colours, "cross" rays paint over them too. ``look``
    finds the nearest walls (``nearest``, or a remembered copy of it)."""
    background = background_colour(grid)
    sources = _sources(grid, background, choice)
    # Cells stand for their flat index, so that "the nearest wall is a source" is a question of
    # place, not of colour; index NOTHING (-1) reads the appended NOTHING.
    places = np.arange(grid.size).reshape(grid.shape)
    flat_colours = np.append(grid.ravel().astype(np.int64), NOTHING)
    is_source = np.append(sources.ravel(), False)
    # A stopping ray meets every filled cell; a passing one meets only sources of its own colour.
    layers = (
        [grid != background]
        if mode == "stop"
        else [sources & (grid == c) for c in np.unique(grid[sources]).tolist()]
    )
    for name, (dr, dc) in DIRECTIONS.items():
        for walls in layers:
            indexed = np.where(walls, places, NOTHING)
            behind = look(indexed, (-dr, -dc))
            ahead = flat_colours[look(indexed, (dr, dc))]
            colour = flat_colours[behind]
            paintable = (grid == background) if mode != "cross" else (grid != colour)
            arriving = paintable & is_source[behind]
            for end in ENDS:
                if end == "border":
                    met = ahead == NOTHING
                elif end == "same colour":
                    met = ahead == colour
                else:
                    met = (ahead != NOTHING) & (ahead != colour)
                yield name, end, arriving & met, colour


# The share of a kind's painted cells that must show their source's colour for it to paint that.
SOURCE_SHARE = 0.5
# Paint the source's colour, or one colour whatever the source (learned from the outputs).
SOURCE_COLOUR = -1
MODES = {
    "stop": "stopping at walls",
    "pass": "passing over other colours",
    "cross": "painting over other colours",
}


Sight = list[tuple[str, str, np.ndarray, np.ndarray]]


def paint(
    grid: np.ndarray, seen: Sight, drawn: dict[tuple[str, str], int], rows_last: bool
) -> np.ndarray:
    """The grid with the learned rays drawn (rays along rows last, or along columns last), as it
    was where none lands on it."""
    out = grid.copy()
    for name, end, cells, colour in sorted(
        seen, key=lambda s: (DIRECTIONS[s[0]][0] == 0) == rows_last
    ):
        if (name, end) in drawn:
            out[cells] = colour[cells] if drawn[name, end] == SOURCE_COLOUR else drawn[name, end]
    return out


def learn_drawn(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], sights: Sequence[Sight]
) -> dict[tuple[str, str], int]:
    """The (direction, end) kinds of ray whose every painted cell changes in the training outputs,
    each with the colour it paints: the source's when the outputs mostly show it (where two rays
    cross, one of them loses), else the one colour they show."""
    outputs: dict[tuple[str, str], list[np.ndarray]] = {}
    matched: dict[tuple[str, str], int] = {}
    wrong: set[tuple[str, str]] = set()
    for (source, target), seen in zip(pairs, sights, strict=True):
        changed = source != target
        for name, end, cells, colour in seen:
            if cells.any():
                kind = (name, end)
                outputs.setdefault(kind, []).append(target[cells])
                matched[kind] = matched.get(kind, 0) + int((target[cells] == colour[cells]).sum())
                if not changed[cells].all():
                    wrong.add(kind)
    drawn = {}
    for kind, painted in outputs.items():
        colours = np.unique(np.concatenate(painted))
        if kind in wrong:
            continue
        if matched[kind] >= SOURCE_SHARE * sum(p.size for p in painted):
            drawn[kind] = SOURCE_COLOUR
        elif colours.size == 1:
            drawn[kind] = int(colours[0])
    return drawn


def ray_rules(train: Sequence[tuple[Grid, Grid]]) -> list[tuple[str, Rule]]:
    """Every learned ray drawing, the ones that draw the fewest kinds of ray first."""
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    # A pair left as it was teaches that no learned ray lands on it; some pair must change.
    if any(s.shape != t.shape for s, t in pairs) or all((s == t).all() for s, t in pairs):
        return []
    colours = sorted(
        set.intersection(*(set(np.unique(s).tolist()) - {background_colour(s)} for s, _ in pairs))
    )
    # Source choices share their walls (every filled cell, or one colour's cells): each wall
    # layout is looked along once.
    look = PerGrid(nearest)
    sights = PerGrid(lambda grid, choice, mode: list(sight(grid, choice, mode, look)))
    order = {True: ", rows last", False: ", columns last"}
    rules = []
    for choice in ("every filled cell", "lone pixels", *(f"colour {c}" for c in colours)):
        for mode, described in MODES.items():
            drawn = learn_drawn(pairs, [sights(s, choice, mode) for s, _ in pairs])
            if not drawn:
                continue
            kinds = ", ".join(f"{name} to {end}" for name, end in sorted(drawn))
            for rows_last in (True, False) if mode != "stop" else (True,):
                rules.append(
                    (
                        len(drawn),
                        f"rays from {choice} {described}{order[rows_last] if mode != 'stop' else ''}: {kinds}",
                        lambda g, c=choice, m=mode, d=drawn, r=rows_last: paint(
                            g, sights(g, c, m), d, r
                        ),
                    )
                )
    rules.extend(_rules_per_colour(pairs, colours, sights))
    # The colours the outputs paint where they change: elbows and empty lines draw in the one.
    added = set.union(*(set(np.unique(t[s != t]).tolist()) for s, t in pairs))
    if len(added) == 1:
        rules.extend(_elbow_rules(pairs, colours, *added))
        rules.extend(_empty_line_rules(*added))
    return [(name, rule) for _, name, rule in sorted(rules, key=lambda r: r[0])]


def _rules_per_colour(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], colours: Sequence[int], sights: PerGrid[Sight]
) -> Iterator[tuple[int, str, Rule]]:
    """Each colour's own kinds of ray, learned apart and drawn together: one colour's rays go
    down, another's right. Where rays of two colours cross, the outputs may show a colour of their
    own, learned too."""
    if len(colours) < 2:
        return
    for mode, described in MODES.items():
        learned = {c: learn_drawn(pairs, [sights(s, f"colour {c}", mode) for s, _ in pairs]) for c in colours}
        learned = {c: drawn for c, drawn in learned.items() if drawn}
        if len(learned) < 2:
            continue
        kinds = "; ".join(f"colour {c} " + ", ".join(f"{name} to {end}" for name, end in sorted(d)) for c, d in learned.items())
        for rows_last in (True, False) if mode != "stop" else (True,):

            def drawn_by_each(
                grid: np.ndarray, m: str = mode, r: bool = rows_last, each: dict = learned
            ) -> tuple[np.ndarray, np.ndarray]:
                return paint_each(grid, [(sights(grid, f"colour {c}", m), d) for c, d in each.items()], r)

            crossing = learn_crossing(pairs, [drawn_by_each(s) for s, _ in pairs])
            name = f"rays from each colour {described}{', rows last' if rows_last else ', columns last'}: {kinds}"
            if crossing is not None:
                name += f", crossings {crossing}"

            def rule(grid: np.ndarray, draw: Callable = drawn_by_each, crossing: int | None = crossing) -> np.ndarray:
                out, crossed = draw(grid)
                if crossing is not None:
                    out[crossed] = crossing
                return out

            yield sum(len(d) for d in learned.values()), name, rule


def elbow(grid: np.ndarray, start: int, end: int, across_first: bool, colour: int) -> np.ndarray | None:
    """A path in ``colour`` from the one cell of colour ``start`` to the one of colour ``end``:
    along its row to the end's column, then along that column (or the column first), over the
    background only; None unless each colour holds one cell."""
    first, last = np.argwhere(grid == start), np.argwhere(grid == end)
    if len(first) != 1 or len(last) != 1:
        return None
    (r0, c0), (r1, c1) = first[0].tolist(), last[0].tolist()
    corner = (r0, c1) if across_first else (r1, c0)
    path = np.zeros(grid.shape, dtype=bool)
    for (ra, ca), (rb, cb) in (((r0, c0), corner), (corner, (r1, c1))):
        path[min(ra, rb) : max(ra, rb) + 1, min(ca, cb) : max(ca, cb) + 1] = True
    path &= grid == background_colour(grid)
    out = grid.copy()
    out[path] = colour
    return out


def _elbow_rules(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], colours: Sequence[int], colour: int
) -> Iterator[tuple[int, str, Rule]]:
    """Elbow paths in ``colour`` between the single cells of two colours."""
    single = [c for c in colours if all((s == c).sum() == 1 for s, _ in pairs)]
    for start in single:
        for end in single:
            if start != end:
                for across_first in (True, False):
                    way = "along the row first" if across_first else "along the column first"
                    yield (
                        2,
                        f"a path from the {start} to the {end}, {way}, in {colour}",
                        lambda g, a=start, b=end, f=across_first, c=colour: elbow(g, a, b, f, c),
                    )


def empty_lines(grid: np.ndarray, rows: bool, columns: bool, colour: int) -> np.ndarray | None:
    """Every row (and, or, column) of the grid that holds only black (0), in ``colour``: a grid
    filled with noise may hold more of another colour than of black."""
    empty = grid == 0
    lines = np.zeros(grid.shape, dtype=bool)
    if rows:
        lines |= empty.all(axis=1, keepdims=True)
    if columns:
        lines |= empty.all(axis=0, keepdims=True)
    if not lines.any():
        return None
    return np.where(lines, np.int8(colour), grid)


def _empty_line_rules(colour: int) -> Iterator[tuple[int, str, Rule]]:
    """The empty rows and columns drawn in ``colour``."""
    if colour == 0:
        return  # drawing black over black changes nothing
    for rows, columns, which in ((True, True, "row and column"), (True, False, "row"), (False, True, "column")):
        yield 1, f"every empty {which} in {colour}", lambda g, r=rows, c=columns, k=colour: empty_lines(g, r, c, k)


def paint_each(
    grid: np.ndarray, each: Sequence[tuple[Sight, dict[tuple[str, str], int]]], rows_last: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The grid with every colour's learned rays drawn (rays along rows last, or along columns
    last), and where rays of two or more colours land."""
    out = grid.copy()
    landed = np.zeros((10, *grid.shape), dtype=bool)
    seen = [(name, end, cells, colour, drawn) for sight_, drawn in each for name, end, cells, colour in sight_ if (name, end) in drawn]
    for name, end, cells, colour, drawn in sorted(seen, key=lambda s: (DIRECTIONS[s[0]][0] == 0) == rows_last):
        painted = colour if drawn[name, end] == SOURCE_COLOUR else np.full(grid.shape, drawn[name, end])
        out[cells] = painted[cells]
        for c in np.unique(painted[cells]).tolist():
            landed[c] |= cells & (painted == c)
    return out, landed.sum(axis=0) >= 2


def learn_crossing(pairs: Sequence[tuple[np.ndarray, np.ndarray]], drawn: Sequence[tuple[np.ndarray, np.ndarray]]) -> int | None:
    """The one colour the outputs show wherever rays of two colours cross, if they show one that
    the rays do not already give."""
    shown = [target[crossed] for (_, target), (_, crossed) in zip(pairs, drawn, strict=True)]
    found = np.unique(np.concatenate(shown)) if shown else np.array([])
    if found.size != 1:
        return None
    colour = int(found[0])
    return None if all((out[crossed] == colour).all() for out, crossed in drawn) else colour


def ray_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The rays learned from the training pairs drawn on the test input, best score first."""
    return candidates_from_rules(train, test_input, ray_rules(train))
