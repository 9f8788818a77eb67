"""The stamp family of ARC solvers: a pattern learned per colour, drawn around each of its cells.

A task of this kind marks cells with a colour, and the output draws a fixed pattern around every
marked cell: a red cell gets yellow corners, a blue one an orange cross. The family learns, from
the training pairs (which must keep their size), what each colour's cells draw at each offset up
to a radius: an offset is part of a colour's stamp when the outputs show one colour there, not the
background, around at least two of its cells (a lone sighting may be another cell's stamp). The
cell itself may change colour too. A second reading learns one shape for every colour, drawn in
the marked cell's own colour, so that a colour no training pair showed still draws; being the
simpler, it ranks first among equal scores.

The pattern may also come from the input itself: its largest object copied onto every lone cell
of a marker colour, by its centre or by its own cell of a colour, the original kept or erased.

A colour's stamp at radius 1 or 2 counts only when the next radius adds nothing to it: a pattern
that keeps growing is a line or a fill (other families draw those), and a stub of it would answer
a test whose lines are longer with a confident wrong grid. Stamps are drawn on the background
only, the smaller radius first, and every rule is scored on the training pairs.

**Bound.** The cells around every filled cell up to radius 3 (49 offsets) are read once per pair,
as windows of the padded grid: at most 17 x 900 x 49 values counted in one pass, vectorised; a
rule then draws at most 10 colours x 25 offsets, each one shifted copy of the grid. Templates are
read only on grids of at most 60 objects, once per grid and marker colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from inferscale.arc.objects import ObjectsOf, Shape, objects_on_background
from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

RADII = (1, 2, 3)
# The most objects a grid may hold for its largest to be read as a template and its lone cells as
# markers.
MAX_OBJECTS = 60
# The key of the stamp that every colour shares, drawn in the marked cell's own colour.
OWN_COLOUR = -1
# Colours of the learning tables beside 0-9: "the marked cell's own colour" (the shared stamp's)
# and "the background", which a stamp never draws.
MARKER, BACKGROUND = 10, 11
SLOTS = 12
# An offset joins a stamp when the outputs show one colour there around this many cells or more.
MIN_SIGHTINGS = 2


def shifted(grid: np.ndarray, dy: int, dx: int, fill: int) -> np.ndarray:
    """``grid`` read at an offset: cell (y, x) holds grid[y + dy, x + dx], ``fill`` beyond the edge."""
    h, w = grid.shape
    out = np.full((h, w), fill, dtype=np.int16)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[yd, xd] = grid[ys, xs]
    return out


def offsets(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def learn_tables(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray] | None:
    """How many cells the outputs show in each colour at each offset up to the largest radius (index
    (dy + R) * (2R + 1) + dx + R): per marking colour, an (offsets, 10, SLOTS) table, and for every
    colour at once, its own colour read as MARKER, an (offsets, SLOTS) one; the pair's background
    reads as BACKGROUND in both. None when a pair changes size."""
    if any(source.shape != target.shape for source, target in pairs):
        return None
    reach = max(RADII)
    side = 2 * reach + 1
    per_colour = np.zeros(side * side * 10 * SLOTS, dtype=np.int64)
    shared = np.zeros(side * side * SLOTS, dtype=np.int64)
    offset_index = np.arange(side * side).reshape(1, side, side)
    centre = offset_index == reach * side + reach
    for source, target in pairs:
        background = background_colour(source)
        ys, xs = np.nonzero(source != background)
        # Every marked cell's window of the radius around it, -1 beyond the edge.
        around = sliding_window_view(np.pad(source.astype(np.int16), reach, constant_values=-1), (side, side))[ys, xs]
        became = sliding_window_view(np.pad(target.astype(np.int16), reach, constant_values=-1), (side, side))[ys, xs]
        key = source[ys, xs].astype(np.int64).reshape(-1, 1, 1)
        # The cell itself may change colour; elsewhere only background cells are drawn on.
        drawable = (around == background) | centre
        offset = np.broadcast_to(offset_index, around.shape)[drawable]
        drawn = became[drawable].astype(np.int64)
        drawn[drawn == background] = BACKGROUND
        keys = np.broadcast_to(key, around.shape)[drawable]
        per_colour += np.bincount((offset * 10 + keys) * SLOTS + drawn, minlength=per_colour.size)
        shared += np.bincount(offset * SLOTS + np.where(drawn == keys, MARKER, drawn), minlength=shared.size)
    return per_colour.reshape(side * side, 10, SLOTS), shared.reshape(side * side, SLOTS)


def learn_stamps(tables: tuple[np.ndarray, np.ndarray], radius: int, shared: bool) -> dict[int, dict[tuple[int, int], int]]:
    """Per colour (or, ``shared``, one stamp under OWN_COLOUR), the colour drawn at each offset
    within ``radius`` where the outputs always show one."""
    per_colour, every = tables
    reach = max(RADII)
    side = 2 * reach + 1
    stamps: dict[int, dict[tuple[int, int], int]] = {}
    for index in range(side * side):
        dy, dx = index // side - reach, index % side - reach
        if max(abs(dy), abs(dx)) > radius:
            continue
        seen = every[index].reshape(1, SLOTS) if shared else per_colour[index]
        # One colour, seen more than once: a lone sighting may be another cell's stamp.
        for key in np.nonzero(((seen > 0).sum(axis=1) == 1) & (seen.sum(axis=1) >= MIN_SIGHTINGS))[0].tolist():
            drawn = int(seen[key].argmax())
            unchanged = MARKER if shared else key
            if drawn != BACKGROUND and not ((dy, dx) == (0, 0) and drawn == unchanged):
                stamps.setdefault(OWN_COLOUR if shared else key, {})[(dy, dx)] = drawn
    return stamps


def stamped(grid: np.ndarray, stamps: dict[int, dict[tuple[int, int], int]]) -> np.ndarray:
    """``grid`` with every stamp drawn around the cells of its colour, on the background only."""
    background = background_colour(grid)
    out = grid.copy()
    marked = grid != background
    for colour, stamp in stamps.items():
        sources = marked if colour == OWN_COLOUR else grid == colour
        for (dy, dx), drawn in stamp.items():
            # Cell (y, x) is drawn when its cell at (-dy, -dx) is a source.
            reached = shifted(sources.astype(np.int16), -dy, -dx, 0).astype(bool)
            if (dy, dx) != (0, 0):
                reached &= grid == background
            paint = shifted(grid, -dy, -dx, background) if drawn == MARKER else np.full(grid.shape, drawn)
            out[reached] = paint[reached]
    return out


def _template_and_markers(
    grid: np.ndarray, marker: int, objects_of: ObjectsOf = objects_on_background
) -> tuple[Shape, list[tuple[int, int]]] | None:
    """The largest object (8-connected, of any colours; the one largest) and the lone cells of
    colour ``marker`` outside it."""
    found = objects_of(grid, True, False)
    if len(found) > MAX_OBJECTS:
        return None
    sizes = [s.size for s in found]
    if not sizes or sizes.count(max(sizes)) != 1 or max(sizes) < 2:
        return None
    template = found[sizes.index(max(sizes))]
    markers = [(s.top, s.left) for s in found if s.size == 1 and s.colours == (marker,)]
    return (template, markers) if markers else None


TemplateFinder = Callable[[np.ndarray, int], "tuple[Shape, list[tuple[int, int]]] | None"]


def copied_to_markers(
    grid: np.ndarray, marker: int, anchor: int | None, erase_original: bool, find: TemplateFinder = _template_and_markers
) -> np.ndarray | None:
    """The largest object copied onto each lone cell of colour ``marker``, so that its cell of
    colour ``anchor`` (None: its centre) lands on the marker; the copy's ``anchor`` cell itself is
    left out and the marker emptied; the original kept or erased."""
    found = find(grid, marker)
    if found is None:
        return None
    template, markers = found
    background = background_colour(grid)
    box = template.cut(grid)
    cells = template.mask[template.top : template.bottom, template.left : template.right].copy()
    if anchor is None:
        if box.shape[0] % 2 == 0 or box.shape[1] % 2 == 0:
            return None  # an even side has no centre cell
        at = (box.shape[0] // 2, box.shape[1] // 2)
    else:
        spots = np.argwhere(cells & (box == anchor))
        if len(spots) != 1:
            return None
        at = (int(spots[0][0]), int(spots[0][1]))
        cells[at] = False
    out = grid.copy()
    if erase_original:
        out[template.mask] = background
    h, w = grid.shape
    for top, left in markers:
        out[top, left] = background
        for r, c in np.argwhere(cells).tolist():
            y, x = top - at[0] + r, left - at[1] + c
            if 0 <= y < h and 0 <= x < w:
                out[y, x] = box[r, c]
    return out


def stamp_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    tables = learn_tables(pairs)
    if tables is None:
        return
    yield from template_rules(pairs)
    for radius in RADII[:-1]:
        for shared in (True, False):
            # A stamp that grows with the radius is a line or a fill, not a pattern of its own.
            wider = learn_stamps(tables, radius + 1, shared)
            stamps = {colour: stamp for colour, stamp in learn_stamps(tables, radius, shared).items() if wider.get(colour) == stamp}
            if stamps:
                kind = "one stamp in each cell's colour" if shared else "a stamp per colour"
                yield f"{kind}, radius {radius}", lambda g, s=stamps: stamped(g, s)


def template_rules(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[str, Rule]]:
    """Copies of the largest object onto the lone cells of each colour every input shows alone."""
    # Each grid's objects found once, for the lone colours and for every marker's template.
    objects_of: ObjectsOf = PerGrid(objects_on_background)
    singles = set.intersection(*({s.colours[0] for s in objects_of(source, True, False) if s.size == 1} for source, _ in pairs))
    find: TemplateFinder = PerGrid(lambda grid, marker: _template_and_markers(grid, marker, objects_of))
    for marker in sorted(singles):
        first = find(pairs[0][0], marker)
        if first is None:
            continue
        # The anchor is a colour the template holds once: read off the first pair's template.
        for anchor in (None, *first[0].colours):
            for erase in (False, True):
                where = "its centre" if anchor is None else f"its cell of colour {anchor}"
                yield (
                    f"the largest object copied onto each lone {marker}, {where} on it{', the original erased' if erase else ''}",
                    lambda g, m=marker, a=anchor, e=erase: copied_to_markers(g, m, a, e, find),
                )


def stamp_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The family's rules that apply to the task, best score first, one per distinct grid."""
    return candidates_from_rules(train, test_input, stamp_rules(train))
