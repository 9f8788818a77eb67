"""The in-place object family of ARC solvers: each object of the input changed where it stands.

The objects are the input's connected components (as in ``inferscale.arc.objects``). A rule,
learned from the training pairs (which must keep their size), changes them where they stand:
- recolours each object by a table from one of its properties (size, size rank, being the
  largest or smallest, shape, colour, height, width, touching the border, holding a hole, how
  many holes, how many objects share its shape) to the colour it takes, or to "kept"; used only
  when consistent on every training object and when the test input's objects show only values
  the table has seen;
- moves the objects of one colour (or all) by an offset read off the first pair, or each colour
  by its own offset (the same in every pair that shows it), or in a
  direction (or towards whichever side reaches one first) until they touch a cell of another
  colour, an anchor; or the objects of every colour that moves, each towards its own anchor; or
  lets every object fall as a rigid body until it rests on the border or on an object that fell
  before it (gravity), or slides each object to the side its colour (or shape) calls for;
- recolours each object of one colour with the colour of the nearest cell of another (or each
  cell with the one other colour its row or column holds), or swaps the two colours of each
  two-coloured object, or recolours each object lying inside another with the colour of the
  outermost (or innermost) one around it;
- mirrors each object within its bounding box;
- sorts the rows or columns by how many filled cells each holds.

**Bound.** A grid holds at most 900 objects, each found once per grid and kind. There are at
most 12 properties x 4 object kinds recolourings (one pass over the objects of the 17 grids
each), 10 offsets, 9 movers x 10 anchors x 5 directions (at most 30 steps per object and
direction), as many again to learn each mover's own anchor, and 4 x 2 gravities (at most 30
steps per object). Slides learned per colour or shape (4 directions per object) and containers
(each object against every other) are read only on grids of at most 60 objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from inferscale.arc.objects import Shape, shapes
from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import SYMMETRIES, Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

KEPT = -1
# The most objects a grid may hold for the rules that look at each object against every other
# (containers) or slide each one on its own.
MAX_OBJECTS = 60
STEPS = {"down": (1, 0), "up": (-1, 0), "right": (0, 1), "left": (0, -1)}
# Object kinds: (8-connected, of one colour).
KINDS = ((True, True), (False, True), (True, False), (False, False))

Properties = Callable[[list[Shape], np.ndarray], list[object]]


def _box(shape: Shape) -> np.ndarray:
    return shape.mask[shape.top : shape.bottom, shape.left : shape.right]


def _look(shape: Shape) -> bytes:
    """The object's shape wherever it lies: equal for objects of equal shape."""
    return _box(shape).tobytes() + bytes(_box(shape).shape)


def _ranks(values: list[int], largest: bool) -> list[int]:
    """Each value's place among the distinct values, from the largest (or smallest)."""
    order = sorted(set(values), reverse=largest)
    return [order.index(v) for v in values]


def _extremes(values: list[int]) -> list[object]:
    """Each value as "largest", "smallest" or "neither": a table over these fits any number of objects."""
    return [
        "largest" if v == max(values) else "smallest" if v == min(values) else "neither"
        for v in values
    ]


def _inside(shape: Shape) -> np.ndarray:
    """The cells of the object's box that it encloses and does not fill: its holes."""
    box = _box(shape)
    return ndimage.binary_fill_holes(box) & ~box


def _holds_a_hole(shape: Shape) -> bool:
    return bool(_inside(shape).any())


def _holes(shape: Shape) -> int:
    """How many separate holes the object encloses (4-connected)."""
    return int(ndimage.label(_inside(shape))[1])


def _shared_shape(objects: list[Shape]) -> list[object]:
    looks = [_look(s) for s in objects]
    counts = Counter(looks)
    return [counts[look] for look in looks]


# Each property's value for every object of a grid, computed together (ranks and counts need all).
PROPERTIES: dict[str, Properties] = {
    "colour": lambda objs, g: [s.colours for s in objs],
    "size": lambda objs, g: [s.size for s in objs],
    "size rank from the largest": lambda objs, g: list(_ranks([s.size for s in objs], True)),
    "size rank from the smallest": lambda objs, g: list(_ranks([s.size for s in objs], False)),
    "shape": lambda objs, g: [_look(s) for s in objs],
    "height": lambda objs, g: [s.bottom - s.top for s in objs],
    "width": lambda objs, g: [s.right - s.left for s in objs],
    "touching the border": lambda objs, g: [
        s.top == 0 or s.left == 0 or s.bottom == g.shape[0] or s.right == g.shape[1] for s in objs
    ],
    "holding a hole": lambda objs, g: [_holds_a_hole(s) for s in objs],
    "holes": lambda objs, g: [_holes(s) for s in objs],
    "objects of its shape": lambda objs, g: _shared_shape(objs),
    "being the largest, the smallest or neither": lambda objs, g: _extremes([s.size for s in objs]),
}


class Objects:
    """A grid's objects and their properties, found once per grid, kind and property in one
    solver call."""

    def __init__(self) -> None:
        self.of = PerGrid(
            lambda g, diagonal, one_colour: shapes(g, background_colour(g), diagonal, one_colour)
        )
        self.values = PerGrid(
            lambda g, diagonal, one_colour, name: PROPERTIES[name](
                self.of(g, diagonal, one_colour), g
            )
        )


def learn_recolouring(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    found: Objects,
    name: str,
    diagonal: bool,
    one_colour: bool,
) -> dict[object, int] | None:
    """The colour (or ``KEPT``) each value of the property leads to; None when the outputs do not
    recolour whole objects, or a value leads to two colours."""
    table: dict[object, set[int]] = {}
    changes = False
    for source, target in pairs:
        covered = np.zeros(source.shape, dtype=bool)
        for shape, value in zip(
            found.of(source, diagonal, one_colour),
            found.values(source, diagonal, one_colour, name),
            strict=True,
        ):
            taken = np.unique(target[shape.mask])
            if taken.size != 1:
                return None
            colour = int(taken[0])
            kept = len(shape.colours) == 1 and shape.colours[0] == colour
            changes |= not kept
            allowed = {colour, KEPT} if kept else {colour}
            table[value] = table.get(value, allowed) & allowed
            if not table[value]:
                return None
            covered |= shape.mask
        if (source[~covered] != target[~covered]).any():
            return None
    if not changes:
        return None
    return {
        value: min(options) if KEPT not in options else KEPT for value, options in table.items()
    }


def recolour_objects(
    grid: np.ndarray,
    found: Objects,
    name: str,
    diagonal: bool,
    one_colour: bool,
    table: dict[object, int],
) -> np.ndarray | None:
    """Each object in the colour the table gives its property's value; None for a value it lacks."""
    out = grid.copy()
    for shape, value in zip(
        found.of(grid, diagonal, one_colour),
        found.values(grid, diagonal, one_colour, name),
        strict=True,
    ):
        if value not in table:
            return None
        if table[value] != KEPT:
            out[shape.mask] = table[value]
    return out


def _moving(grid: np.ndarray, mover: int | None) -> np.ndarray:
    return (grid != background_colour(grid)) if mover is None else grid == mover


def shift(grid: np.ndarray, mover: int | None, offset: tuple[int, int]) -> np.ndarray | None:
    """The cells of colour ``mover`` (None: every filled cell) moved by ``offset``, drawn over the
    rest; cells moved off the grid are lost."""
    colours = np.unique(grid[_moving(grid, mover)]).tolist()
    return shift_each(grid, dict.fromkeys(colours, offset))


def learn_offset(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], mover: int | None
) -> tuple[int, int] | None:
    """The offset that carries the mover's cells' bounding box in the first pair to the output's."""
    source, target = pairs[0]
    before, after = np.nonzero(_moving(source, mover)), np.nonzero(_moving(target, mover))
    if not before[0].size or not after[0].size:
        return None
    offset = (int(after[0].min() - before[0].min()), int(after[1].min() - before[1].min()))
    return None if offset == (0, 0) else offset


def learn_offsets(pairs: Sequence[tuple[np.ndarray, np.ndarray]], colours: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Each colour's own offset, the same in every pair that shows the colour (carrying its cells'
    bounding box to the output's, with as many cells after as before); colours that stay, or move
    differently from pair to pair, are left out."""
    offsets = {}
    for colour in colours:
        seen = set()
        for source, target in pairs:
            before, after = np.nonzero(source == colour), np.nonzero(target == colour)
            if before[0].size != after[0].size:
                seen.add(None)
            elif before[0].size:
                seen.add((int(after[0].min() - before[0].min()), int(after[1].min() - before[1].min())))
        if len(seen) == 1 and None not in seen and (0, 0) not in seen:
            offsets[colour] = seen.pop()
    return offsets


def shift_each(grid: np.ndarray, offsets: dict[int, tuple[int, int]]) -> np.ndarray | None:
    """The cells of each colour moved by that colour's offset, all at once, drawn over the cells
    that stay; cells moved off the grid are lost."""
    background = np.int8(background_colour(grid))
    moving = np.isin(grid, list(offsets))
    if not moving.any():
        return None
    out = np.where(moving, background, grid)
    for colour, (dr, dc) in offsets.items():
        rows, cols = np.nonzero(grid == colour)
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < grid.shape[0]) & (c >= 0) & (c < grid.shape[1])
        out[r[inside], c[inside]] = colour
    return out


def swap_colours_in_objects(grid: np.ndarray, found: Objects) -> np.ndarray | None:
    """Each 8-connected object of exactly two colours with those two colours swapped."""
    out = grid.copy()
    swapped = False
    for shape in found.of(grid, True, False):
        if len(shape.colours) == 2:
            first, second = shape.colours
            out[shape.mask & (grid == first)] = second
            out[shape.mask & (grid == second)] = first
            swapped = True
    return out if swapped else None


def _slide(
    cells: tuple[np.ndarray, np.ndarray],
    blocked: np.ndarray,
    step: tuple[int, int],
    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> int:
    """How many steps an object's cells move in ``step`` before blocked cells or the border come
    next; with ``stop``, how many before ``stop`` holds of its cells, -1 if it is blocked first."""
    rows, cols = cells
    h, w = blocked.shape
    for k in range(max(h, w)):
        if stop is not None and stop(rows + k * step[0], cols + k * step[1]):
            return k
        r, c = rows + (k + 1) * step[0], cols + (k + 1) * step[1]
        if r.min() < 0 or c.min() < 0 or r.max() >= h or c.max() >= w or blocked[r, c].any():
            return k if stop is None else -1
    return -1


def move_until_touching(
    grid: np.ndarray, found: Objects, mover: int, anchor: int | None, direction: str
) -> np.ndarray | None:
    """Each object of colour ``mover`` moved towards ``direction`` ("towards": whichever of the four
    reaches one soonest) until it touches a cell of ``anchor`` (None: any other colour); objects
    that would never touch one stay."""
    background = background_colour(grid)
    anchors = (grid != background) & (grid != mover) if anchor is None else grid == anchor
    if not anchors.any():
        return None
    padded = np.pad(anchors, 1)
    touching = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    out = grid.copy()
    moved = False
    for shape in [s for s in found.of(grid, True, True) if s.colours == (mover,)]:
        cells = np.nonzero(shape.mask)
        blocked = (grid != background) & ~shape.mask
        tried = STEPS.values() if direction == "towards" else (STEPS[direction],)
        reach = [
            (k, step)
            for step in tried
            if (k := _slide(cells, blocked, step, lambda r, c: bool(touching[r, c].any()))) > 0
        ]
        if reach:
            steps, step = min(reach)
            out[cells] = background
            out[cells[0] + steps * step[0], cells[1] + steps * step[1]] = mover
            moved = True
    return out if moved else None


def learn_anchors(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], found: Objects, movers: Sequence[int], still: Sequence[int]
) -> list[tuple[int, int | None]] | None:
    """For each mover colour, the anchor (a colour that stays, or None: any other colour) such that
    moving it towards whichever side touches the anchor soonest puts its cells where every training
    output has them; None when some mover has no such anchor."""
    anchored = []
    for mover in movers:
        for anchor in (*still, None):
            results = [move_until_touching(s, found, mover, anchor, "towards") for s, _ in pairs]
            if all(r is not None and ((r == mover) == (t == mover)).all() for r, (_, t) in zip(results, pairs, strict=True)):
                anchored.append((mover, anchor))
                break
        else:
            return None
    return anchored


def move_each_towards(grid: np.ndarray, found: Objects, anchored: Sequence[tuple[int, int | None]]) -> np.ndarray | None:
    """The objects of each mover colour in turn moved towards the side where they soonest touch
    its anchor; None when none moves."""
    out = grid
    for mover, anchor in anchored:
        moved = move_until_touching(out, found, mover, anchor, "towards")
        out = out if moved is None else moved
    return None if out is grid else out


# What an object's own direction of slide may be learned from.
SLIDE_KEYS: dict[str, Callable[[Shape], object]] = {"colour": lambda s: s.colours, "shape": _look}


def _slid(grid: np.ndarray, shape: Shape, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Where the object's cells end when it slides towards ``direction`` until the border or
    another filled cell of the grid stops it."""
    cells = np.nonzero(shape.mask)
    step = STEPS[direction]
    steps = _slide(cells, (grid != background_colour(grid)) & ~shape.mask, step)
    return cells[0] + steps * step[0], cells[1] + steps * step[1]


def learn_slides(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], found: Objects, key: str
) -> dict[object, frozenset[str]] | None:
    """The directions objects may slide in, per value of ``key`` (their colour or shape): those
    that land every such object of every pair where the output shows it. Several directions fit
    only objects that stayed where they were, blocked every way that fits. None when a value has
    no direction, or no value has exactly one (nothing was seen to move)."""
    # Sliding only moves cells: every pair keeps its count of each colour.
    if any((np.bincount(s.ravel(), minlength=10) != np.bincount(t.ravel(), minlength=10)).any() for s, t in pairs):
        return None
    options: dict[object, frozenset[str]] = {}
    for source, target in pairs:
        if len(found.of(source, True, True)) > MAX_OBJECTS:
            return None  # hundreds of specks are noise, not objects that each know their way
        for shape in found.of(source, True, True):
            landing = frozenset(d for d in STEPS if (target[_slid(source, shape, d)] == shape.colours[0]).all())
            value = SLIDE_KEYS[key](shape)
            options[value] = options.get(value, landing) & landing
    if not options or any(not o for o in options.values()):
        return None
    return options if any(len(o) == 1 for o in options.values()) else None


def slide_each(grid: np.ndarray, found: Objects, key: str, directions: dict[object, frozenset[str]]) -> np.ndarray | None:
    """Each object slid in the direction learned for its colour (or shape), the others standing
    where they were. None when an object's value was never seen, or when its value allows several
    directions that would land it in different places: the pairs never told which way it goes."""
    background = background_colour(grid)
    out = grid.copy()
    moves = []
    if len(found.of(grid, True, True)) > MAX_OBJECTS:
        return None
    for shape in found.of(grid, True, True):
        allowed = directions.get(SLIDE_KEYS[key](shape))
        if allowed is None:
            return None
        landings = [_slid(grid, shape, d) for d in sorted(allowed)]
        if any((r != landings[0][0]).any() or (c != landings[0][1]).any() for r, c in landings[1:]):
            return None
        moves.append((landings[0], shape))
    for _, shape in moves:
        out[shape.mask] = background
    for landing, shape in moves:
        out[landing] = shape.colours[0]
    return out


def gravity(grid: np.ndarray, direction: str, diagonal: bool) -> np.ndarray | None:
    """Every object falls towards ``direction`` as a rigid body until it rests on the border or on
    an object that has already fallen; the objects nearest that side fall first."""
    background = background_colour(grid)
    step = STEPS[direction]
    objects = shapes(grid, background, diagonal, one_colour=False)
    lead = (
        (lambda s: -s.bottom)
        if step == (1, 0)
        else (lambda s: s.top)
        if step == (-1, 0)
        else (lambda s: -s.right)
        if step == (0, 1)
        else (lambda s: s.left)
    )
    out = np.full_like(grid, background)
    settled = np.zeros(grid.shape, dtype=bool)
    for shape in sorted(objects, key=lead):
        cells = np.nonzero(shape.mask)
        steps = _slide(cells, settled, step)
        r, c = cells[0] + steps * step[0], cells[1] + steps * step[1]
        out[r, c] = grid[cells]
        settled[r, c] = True
    return None if (out == grid).all() else out


def mirror_objects(grid: np.ndarray, symmetry: str, diagonal: bool) -> np.ndarray | None:
    """Each object replaced by its image under ``symmetry`` within its own bounding box."""
    background = background_colour(grid)
    out = grid.copy()
    for shape in shapes(grid, background, diagonal, one_colour=False):
        box = shape.alone(grid, background)
        turned = SYMMETRIES[symmetry](box)
        if turned.shape != box.shape:
            return None
        region = out[shape.top : shape.bottom, shape.left : shape.right]
        region[_box(shape)] = background
        region[turned != background] = turned[turned != background]
    return None if (out == grid).all() else out


def recolour_by_nearest(grid: np.ndarray, found: Objects, colour: int, diagonal: bool) -> np.ndarray | None:
    """Each object of ``colour`` recoloured with the colour of the nearest cell (straight-line
    distance from any of its cells) of another colour than it and the background."""
    background = background_colour(grid)
    others = (grid != background) & (grid != colour)
    if not others.any() or colour == background:
        return None
    distance, (rows, cols) = ndimage.distance_transform_edt(~others, return_indices=True)
    out = grid.copy()
    for shape in found.of(grid, diagonal, True):
        if shape.colours != (colour,):
            continue
        cells = np.nonzero(shape.mask)
        closest = int(np.argmin(distance[cells]))
        out[shape.mask] = grid[rows[cells][closest], cols[cells][closest]]
    return out


def recolour_by_line(grid: np.ndarray, colour: int, columns: bool) -> np.ndarray | None:
    """Each cell of ``colour`` recoloured with the one other colour its row (or column) holds
    besides the background; None when a line holding such a cell holds no other colour, or two."""
    lines = grid.T if columns else grid
    background = background_colour(grid)
    out = lines.copy()
    for index, line in enumerate(lines):
        if not (line == colour).any():
            continue
        others = np.unique(line[(line != background) & (line != colour)])
        if others.size != 1:
            return None
        out[index][line == colour] = others[0]
    return out.T if columns else out


def recolour_by_container(grid: np.ndarray, found: Objects, outermost: bool) -> np.ndarray | None:
    """Each 8-connected one-colour object that lies inside another's enclosed space recoloured
    with the colour of the outermost (or the innermost) object around it."""
    objects = found.of(grid, True, True)
    if len(objects) > MAX_OBJECTS:
        return None  # an object against each of hundreds is more than a frame-and-contents task
    containers = []
    for shape in objects:
        inside = _inside(shape)
        if inside.any():  # most objects enclose nothing and hold no other
            whole = np.zeros(grid.shape, dtype=bool)
            whole[shape.top : shape.bottom, shape.left : shape.right] = inside
            containers.append((int(inside.sum()), whole, shape))
    out = grid.copy()
    changed = False
    for shape in objects if containers else ():
        around = [(size, other) for size, inside, other in containers if (shape.mask <= inside).all()]
        if around:
            _, container = max(around, key=lambda a: a[0]) if outermost else min(around, key=lambda a: a[0])
            out[shape.mask] = container.colours[0]
            changed = True
    return out if changed else None


def sort_lines(grid: np.ndarray, columns: bool, descending: bool) -> np.ndarray | None:
    """The rows (or columns) reordered by how many filled cells each holds, stably."""
    lines = grid.T if columns else grid
    counts = (lines != background_colour(grid)).sum(axis=1)
    order = np.argsort(-counts if descending else counts, kind="stable")
    ordered = lines[order]
    return ordered.T if columns else ordered


def _same_lines(source: np.ndarray, target: np.ndarray) -> bool:
    """Whether the target's rows are the source's, in some order."""
    return sorted(map(bytes, source)) == sorted(map(bytes, target))


def object_transform_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    """The consistent recolourings, the moves, gravities and mirrorings, and the sorts that only
    reorder lines, for a task whose pairs keep their size and change something."""
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    if any(s.shape != t.shape or (s == t).all() for s, t in pairs):
        return
    found = Objects()
    for diagonal, one_colour in KINDS:
        kind = f"{'8' if diagonal else '4'}-connected {'one-colour' if one_colour else 'any-colour'} objects"
        for name in PROPERTIES:
            table = learn_recolouring(pairs, found, name, diagonal, one_colour)
            if table is not None:
                yield (
                    f"recolour {kind} by {name}",
                    lambda g, n=name, d=diagonal, o=one_colour, t=table: recolour_objects(
                        g, found, n, d, o, t
                    ),
                )
    colours = sorted(
        set.intersection(*(set(np.unique(s).tolist()) - {background_colour(s)} for s, _ in pairs))
    )
    # The colours whose every cell changes colour in every pair: each object of one may take the
    # colour of its nearest neighbour.
    for colour in colours:
        if all(((s == colour) <= (s != t)).all() for s, t in pairs):
            for columns in (False, True):
                yield (
                    f"recolour each cell of colour {colour} with the other colour its {'column' if columns else 'row'} holds",
                    lambda g, c=colour, k=columns: recolour_by_line(g, c, k),
                )
            for diagonal in (True, False):
                yield (
                    f"recolour each {'8' if diagonal else '4'}-connected object of colour {colour} with the nearest other colour",
                    lambda g, c=colour, d=diagonal: recolour_by_nearest(g, found, c, d),
                )
    for mover in (None, *colours):
        offset = learn_offset(pairs, mover)
        if offset is not None:
            yield (
                f"move {'everything' if mover is None else f'colour {mover}'} by {offset}",
                lambda g, m=mover, o=offset: shift(g, m, o),
            )
    # Any colour some input shows may move: a colour absent from a pair says nothing against it.
    shown = set().union(*(set(np.unique(s).tolist()) - {background_colour(s)} for s, _ in pairs))
    offsets = learn_offsets(pairs, sorted(shown))
    if len(offsets) > 1:
        described = ", ".join(f"{colour} by {offset}" for colour, offset in offsets.items())
        yield f"move each colour by its own offset: {described}", lambda g, o=offsets: shift_each(g, o)
    yield "swap the two colours of each object", lambda g: swap_colours_in_objects(g, found)
    for outermost in (True, False):
        yield (
            f"recolour each object inside another with the {'outermost' if outermost else 'innermost'} one's colour",
            lambda g, o=outermost: recolour_by_container(g, found, o),
        )
    # Movers are the colours whose cells move in every pair (as many after as before); anchors
    # the colours that stay.
    moved = [
        c
        for c in colours
        if all(((s == c) != (t == c)).any() and (s == c).sum() == (t == c).sum() for s, t in pairs)
    ]
    still = [c for c in colours if all(((s == c) == (t == c)).all() for s, t in pairs)]
    for mover in moved:
        for anchor in (None, *still):
            for direction in ("towards", *STEPS):
                yield (
                    f"move colour {mover} {direction} until it touches {'another colour' if anchor is None else f'colour {anchor}'}",
                    lambda g, m=mover, a=anchor, d=direction: move_until_touching(
                        g, found, m, a, d
                    ),
                )
    if len(moved) > 1:
        anchored = learn_anchors(pairs, found, moved, still)
        if anchored is not None:
            described = ", ".join(f"{m} towards {'another colour' if a is None else a}" for m, a in anchored)
            yield f"move each colour until it touches its anchor: {described}", lambda g, m=anchored: move_each_towards(g, found, m)
    for key in SLIDE_KEYS:
        directions = learn_slides(pairs, found, key)
        if directions is not None:
            yield f"slide each object the way its {key} says", lambda g, k=key, d=directions: slide_each(g, found, k, d)
    for direction in STEPS:
        for diagonal in (True, False):
            yield (
                f"gravity {direction} of {'8' if diagonal else '4'}-connected objects",
                lambda g, d=direction, c=diagonal: gravity(g, d, c),
            )
    for symmetry in SYMMETRIES:
        if symmetry != "identity":
            yield f"{symmetry} each object", lambda g, s=symmetry: mirror_objects(g, s, True)
    for columns in (False, True):
        if not all(_same_lines(s.T if columns else s, t.T if columns else t) for s, t in pairs):
            continue  # sorting only reorders lines: every output line must be an input line
        for descending in (False, True):
            yield (
                f"sort the {'columns' if columns else 'rows'} by filled cells, {'most' if descending else 'fewest'} first",
                lambda g, c=columns, d=descending: sort_lines(g, c, d),
            )


def object_transform_candidates(
    train: Sequence[tuple[Grid, Grid]], test_input: Grid
) -> list[Candidate]:
    """The learned in-place object changes applied to the test input, best score first."""
    return candidates_from_rules(train, test_input, object_transform_rules(train))
