"""The enclosure family of ARC solvers: regions enclosed by a colour, or held by a shape, filled.

Walls are the cells of one colour (or every filled cell, or every cell that is not black where
black is not the most frequent colour). The regions are the connected parts of everything else
(4-connected, so a diagonal gap does not leak; or 8-connected, so it does); a region is enclosed
when it does not reach the border. A rule fills either the background cells of each region or all
of its cells, with:
- one colour, the same for every enclosed region;
- the colour of the wall around it;
- a colour looked up by the region's size, its shape (square, rectangle or other), whether it
  is the largest or the smallest region (enclosed or not) or whether it is enclosed, in a table
  learned from the training pairs (a region may also be left as it is);
- the one colour already inside it (a seed floods its room, enclosed or not).
The backgrounds of shapes are filled too: each object's bounding box (or the box of all cells of
each colour, or only that box's edge), where it is background, with one colour or the object's
own. Which walls, connectivity, cells and colour is learned from the training pairs, which must
keep their size (and some pair must change): only walls that no output changes are tried, then
each rule is scored on the pairs.

**Bound.** At most 11 wall choices x 2 connectivities, each labelled once per grid (17 grids of
900 cells) and per table, and one pass per region (at most 450 per grid) to read its colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from inferscale.arc.objects import EIGHT, FOUR, shapes
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

EVERY_FILLED = -1
# Every cell not black (0): "filled" where black is not the most frequent colour of the grid.
EVERY_NOT_BLACK = -3
# A region left as it is.
KEEP = -2
FIXED_COLOURINGS = ("one colour", "the wall's colour", "the colour inside it")


def _shape_of(region: np.ndarray) -> str:
    rows, cols = np.nonzero(region)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    return ("square" if h == w else "rectangle") if h * w == rows.size else "other"


def _size_extreme(region: np.ndarray, labels: np.ndarray) -> str:
    sizes = np.bincount(labels.ravel())[1:]
    size = int(region.sum())
    return "largest" if size == sizes.max() else "smallest" if size == sizes[sizes > 0].min() else "neither"


# What a region's colour may be learned from, and whether only enclosed regions count.
KEYS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], object], bool]] = {
    "size": (lambda region, labels: int(region.sum()), True),
    "shape": (lambda region, labels: _shape_of(region), True),
    "being the largest, the smallest or neither": (lambda region, labels: _size_extreme(region, labels), False),
    "being enclosed": (
        lambda region, labels: (
            not (region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())
        ),
        False,
    ),
}


def wall_mask(grid: np.ndarray, wall: int) -> np.ndarray:
    """The cells of colour ``wall``, or every filled (or every non-black) cell for ``EVERY_FILLED``
    (``EVERY_NOT_BLACK``)."""
    if wall == EVERY_FILLED:
        return grid != background_colour(grid)
    return grid != 0 if wall == EVERY_NOT_BLACK else grid == wall


def regions(
    grid: np.ndarray, wall: int, diagonal: bool, enclosed_only: bool
) -> tuple[np.ndarray, int]:
    """The labels of the regions between the walls (0 on walls and, with ``enclosed_only``, on
    regions that reach the border), and the highest label."""
    labels, count = ndimage.label(~wall_mask(grid, wall), structure=EIGHT if diagonal else FOUR)
    if enclosed_only:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        labels[np.isin(labels, border)] = 0
    return labels, count


def _region_colours(
    grid: np.ndarray,
    labels: np.ndarray,
    count: int,
    colouring: str,
    wall: int,
    table: dict[object, int],
    colour: int,
) -> np.ndarray | None:
    """The colour each region label is filled with (index 0 unused, ``KEEP`` for a region left
    alone); None when one has no colour to take."""
    background = background_colour(grid)
    fills = np.full(count + 1, KEEP, dtype=np.int64)
    for label in np.unique(labels[labels > 0]).tolist():
        region = labels == label
        if colouring == "one colour":
            fills[label] = colour
        elif colouring.startswith("a colour by its "):
            key = KEYS[colouring.removeprefix("a colour by its ")][0](region, labels)
            if key not in table:
                return None
            fills[label] = table[key]
        elif colouring == "the wall's colour":
            rim = ndimage.binary_dilation(region, structure=EIGHT) & ~region & wall_mask(grid, wall)
            values, counts = np.unique(grid[rim], return_counts=True)
            if not values.size:
                return None
            fills[label] = values[counts.argmax()]
        else:  # the colour inside it, where there is one
            inside = np.unique(grid[region & (grid != background)])
            fills[label] = inside[0] if inside.size == 1 else KEEP
    return fills


def _enclosed_only(colouring: str) -> bool:
    if colouring.startswith("a colour by its "):
        return KEYS[colouring.removeprefix("a colour by its ")][1]
    return colouring != "the colour inside it"


def fill_regions(
    grid: np.ndarray,
    wall: int,
    diagonal: bool,
    everything: bool,
    colouring: str,
    table: dict[object, int],
    colour: int,
) -> np.ndarray | None:
    """The grid with its regions filled as the rule says; None when a region has no colour to
    take."""
    labels, count = regions(grid, wall, diagonal, _enclosed_only(colouring))
    fills = _region_colours(grid, labels, count, colouring, wall, table, colour)
    if fills is None:
        return None
    target = (labels > 0) & (fills[labels] != KEEP)
    if not everything:
        target &= grid == background_colour(grid)
    out = np.where(target, fills[labels], grid).astype(np.int8)
    return out


def fill_boxes(grid: np.ndarray, diagonal: bool, colour: int | None) -> np.ndarray:
    """Each object's bounding box, where background, in ``colour`` (None: the object's own)."""
    background = background_colour(grid)
    out = grid.copy()
    for shape in shapes(grid, background, diagonal, one_colour=True):
        box = out[shape.top : shape.bottom, shape.left : shape.right]
        box[grid[shape.top : shape.bottom, shape.left : shape.right] == background] = (
            shape.colours[0] if colour is None else colour
        )
    return out


def fill_colour_boxes(grid: np.ndarray, colour: int | None, outline: bool = False) -> np.ndarray:
    """The bounding box of all cells of each colour (or, ``outline``, only its edge), where
    background, in ``colour`` (None: that colour): two pixels of a colour span a rectangle."""
    background = background_colour(grid)
    out = grid.copy()
    for own in np.unique(grid).tolist():
        if own == background:
            continue
        rows, cols = np.nonzero(grid == own)
        box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        drawn = grid[box] == background
        if outline:
            drawn[1:-1, 1:-1] = False
        out[box][drawn] = own if colour is None else colour
    return out


def learned_colour(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], wall: int, diagonal: bool
) -> int | None:
    """The one colour every changed cell of an enclosed region takes; None if several."""
    colours: set[int] = set()
    for source, target in pairs:
        labels, _ = regions(source, wall, diagonal, enclosed_only=True)
        colours.update(np.unique(target[(source != target) & (labels > 0)]).tolist())
    return colours.pop() if len(colours) == 1 else None


def learned_table(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], wall: int, diagonal: bool, key: str
) -> dict[object, int] | None:
    """The colour (or ``KEEP``) each value of a region's key leads to; None when a region's changed
    cells take two colours or a value leads to two outcomes."""
    describe, enclosed_only = KEYS[key]
    table: dict[object, int] = {}
    for source, target in pairs:
        labels, _ = regions(source, wall, diagonal, enclosed_only)
        changed = source != target
        for label in np.unique(labels[labels > 0]).tolist():
            region = labels == label
            taken = np.unique(target[changed & region])
            if taken.size > 1:
                return None
            outcome = int(taken[0]) if taken.size else KEEP
            if table.setdefault(describe(region, labels), outcome) != outcome:
                return None
    return table if any(v != KEEP for v in table.values()) else None


def enclosure_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    """Every fill whose walls no training output changes, and the boxes of shapes."""
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    # A pair left as it was teaches that the rule changes nothing there; some pair must change.
    if any(s.shape != t.shape for s, t in pairs) or all((s == t).all() for s, t in pairs):
        return
    walls = sorted(set.union(*(set(np.unique(s).tolist()) for s, _ in pairs)))
    # Black is the background by convention even where another colour is more frequent.
    if any(background_colour(s) != 0 and (s == 0).any() for s, _ in pairs):
        walls.insert(0, EVERY_NOT_BLACK)
    names = {EVERY_FILLED: "every filled cell", EVERY_NOT_BLACK: "every non-black cell"}
    for wall in (EVERY_FILLED, *walls):
        named = names.get(wall, f"colour {wall}")
        for diagonal in (False, True):
            held = [regions(s, wall, diagonal, enclosed_only=False)[0] > 0 for s, _ in pairs]
            if not all(((s != t) <= h).all() for (s, t), h in zip(pairs, held, strict=True)):
                continue  # some changed cell is a wall: walls are never filled
            colour = learned_colour(pairs, wall, diagonal)
            tables = {
                f"a colour by its {key}": learned_table(pairs, wall, diagonal, key) for key in KEYS
            }
            for colouring in (*FIXED_COLOURINGS, *tables):
                if (colouring == "one colour" and colour is None) or (
                    colouring in tables and tables[colouring] is None
                ):
                    continue
                table = tables.get(colouring) or {}
                connected = f"{'8' if diagonal else '4'}-connected"
                for everything in (False, True):
                    cells = "all" if everything else "the background"
                    yield (
                        f"fill {cells} of regions {connected} between walls of {named} with {colouring}",
                        lambda g, w=wall, d=diagonal, e=everything, c=colouring, t=table, k=colour or 0: (
                            fill_regions(g, w, d, e, c, t, k)
                        ),
                    )
    changed_colours = set.union(*(set(np.unique(t[s != t]).tolist()) for s, t in pairs))
    only = changed_colours.pop() if len(changed_colours) == 1 else None
    for diagonal in (False, True):
        shape = f"{'8' if diagonal else '4'}-connected shapes"
        yield (
            f"fill the boxes of {shape} with their colour",
            lambda g, d=diagonal: fill_boxes(g, d, None),
        )
        if only is not None:
            yield (
                f"fill the boxes of {shape} with {only}",
                lambda g, d=diagonal: fill_boxes(g, d, only),
            )
    for outline in (False, True):
        verb = "outline" if outline else "fill"
        yield f"{verb} the box of each colour's cells with it", lambda g, o=outline: fill_colour_boxes(g, None, o)
        if only is not None:
            yield f"{verb} the box of each colour's cells with {only}", lambda g, o=outline: fill_colour_boxes(g, only, o)


def enclosure_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The learned fills applied to the test input, best score first, one per distinct grid."""
    return candidates_from_rules(train, test_input, enclosure_rules(train))
