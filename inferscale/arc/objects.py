"""The object-extraction family of ARC solvers: the output is one part of the input, cut out.

The input's objects are its connected components of non-background cells (4- or 8-connected,
of one colour or of any colours). A selector picks one (the largest, the one of a colour no other
object has, the one whose shape is unique, ...), and the answer is its bounding box cut from the
grid, or the object alone on the background. Other cuts: everything that is not background, all
cells of one colour, and the inside of a frame; or every object, when all share one size, cut out
and laid side by side (across, down, or along the axis they are spread over). Which selector and
cut is learned by scoring every combination on the training pairs
(``inferscale.arc.solvers.candidates_from_rules``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import background_colour

FOUR = ndimage.generate_binary_structure(2, 1)
EIGHT = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class Shape:
    """One connected object: its cells, bounding box and colours."""

    mask: np.ndarray
    top: int
    left: int
    bottom: int
    right: int
    colours: tuple[int, ...]
    size: int

    def cut(self, grid: np.ndarray) -> np.ndarray:
        return grid[self.top : self.bottom, self.left : self.right]

    def alone(self, grid: np.ndarray, background: int) -> np.ndarray:
        return np.where(self.mask, grid, background)[self.top : self.bottom, self.left : self.right]

    def pattern(self, grid: np.ndarray) -> bytes:
        """The object's cells and colours, wherever it lies: equal for equal-looking objects."""
        return self.alone(grid, -1).tobytes() + bytes(self.cut(grid).shape)


def shapes(grid: np.ndarray, background: int, diagonal: bool, one_colour: bool) -> list[Shape]:
    """The connected components of non-background cells, in reading order of their top-left."""
    structure = EIGHT if diagonal else FOUR
    layers = [grid == colour for colour in np.unique(grid) if colour != background] if one_colour else [grid != background]
    found = []
    for layer in layers:
        labels, count = ndimage.label(layer, structure=structure)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels == index
            found.append(
                Shape(
                    mask, box[0].start, box[1].start, box[0].stop, box[1].stop, tuple(np.unique(grid[mask]).tolist()), int(mask.sum())
                )
            )
    return sorted(found, key=lambda s: (s.top, s.left))


def _unique_by(objects: list[Shape], key: Callable[[Shape], object]) -> Shape | None:
    counts = Counter(key(s) for s in objects)
    single = [s for s in objects if counts[key(s)] == 1]
    return single[0] if len(single) == 1 else None


def _extreme(objects: list[Shape], key: Callable[[Shape], float], largest: bool) -> Shape | None:
    """The one object with the largest (or smallest) key; None on a tie."""
    values = [key(s) for s in objects]
    best = max(values) if largest else min(values)
    winners = [s for s, v in zip(objects, values, strict=True) if v == best]
    return winners[0] if len(winners) == 1 else None


Selector = Callable[[list[Shape], np.ndarray], Shape | None]

SELECTORS: dict[str, Selector] = {
    "largest": lambda objs, g: _extreme(objs, lambda s: s.size, True),
    "smallest": lambda objs, g: _extreme(objs, lambda s: s.size, False),
    "largest box": lambda objs, g: _extreme(objs, lambda s: (s.bottom - s.top) * (s.right - s.left), True),
    "smallest box": lambda objs, g: _extreme(objs, lambda s: (s.bottom - s.top) * (s.right - s.left), False),
    "most colours": lambda objs, g: _extreme(objs, lambda s: len(s.colours), True),
    "densest": lambda objs, g: _extreme(objs, lambda s: s.size / ((s.bottom - s.top) * (s.right - s.left)), True),
    "sparsest": lambda objs, g: _extreme(objs, lambda s: s.size / ((s.bottom - s.top) * (s.right - s.left)), False),
    "topmost": lambda objs, g: _extreme(objs, lambda s: s.top, False),
    "bottommost": lambda objs, g: _extreme(objs, lambda s: s.bottom, True),
    "leftmost": lambda objs, g: _extreme(objs, lambda s: s.left, False),
    "rightmost": lambda objs, g: _extreme(objs, lambda s: s.right, True),
    "unique colour": lambda objs, g: _unique_by(objs, lambda s: s.colours),
    "unique shape": lambda objs, g: _unique_by(objs, lambda s: s.mask[s.top : s.bottom, s.left : s.right].tobytes() + bytes((s.bottom - s.top,))),
    "unique look": lambda objs, g: _unique_by(objs, lambda s: s.pattern(g)),
    "most repeated look": lambda objs, g: _most_repeated(objs, g),
    "only mirror-symmetric": lambda objs, g: _only(objs, lambda s: _mirror_symmetric(s, g)),
    "only not mirror-symmetric": lambda objs, g: _only(objs, lambda s: not _mirror_symmetric(s, g)),
}


def _mirror_symmetric(shape: Shape, grid: np.ndarray) -> bool:
    """Whether the object looks the same mirrored left to right or top to bottom."""
    alone = shape.alone(grid, -1)
    return bool((alone == alone[:, ::-1]).all() or (alone == alone[::-1]).all())


def _only(objects: list[Shape], holds: Callable[[Shape], bool]) -> Shape | None:
    """The one object for which ``holds`` is true; None when none or several are."""
    chosen = [s for s in objects if holds(s)]
    return chosen[0] if len(chosen) == 1 else None


def _most_repeated(objects: list[Shape], grid: np.ndarray) -> Shape | None:
    counts = Counter(s.pattern(grid) for s in objects)
    ranked = counts.most_common(2)
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return next(s for s in objects if s.pattern(grid) == ranked[0][0])


ObjectsOf = Callable[[np.ndarray, bool, bool], list[Shape]]


def objects_on_background(grid: np.ndarray, diagonal: bool, one_colour: bool) -> list[Shape]:
    """The grid's objects on its most frequent colour."""
    return shapes(grid, background_colour(grid), diagonal, one_colour)


def select_and_cut(
    selector: Selector, diagonal: bool, one_colour: bool, alone: bool, objects_of: ObjectsOf = objects_on_background
) -> Rule:
    """The object ``selector`` picks, cut out (``alone``: without the other objects in its box).
    ``objects_of`` finds a grid's objects: a remembered copy shares them among a task's rules."""

    def rule(grid: np.ndarray) -> np.ndarray | None:
        background = background_colour(grid)
        objects = objects_of(grid, diagonal, one_colour)
        if not objects:
            return None
        chosen = selector(objects, grid)
        if chosen is None:
            return None
        return chosen.alone(grid, background) if alone else chosen.cut(grid)

    return rule


def content(grid: np.ndarray) -> np.ndarray | None:
    rows, cols = np.nonzero(grid != background_colour(grid))
    return grid[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] if rows.size else None


def colour_box(colour: int, inside: bool) -> Rule:
    """The bounding box of every cell of ``colour``; with ``inside``, without its outermost ring
    (the inside of a frame drawn in that colour)."""

    def rule(grid: np.ndarray) -> np.ndarray | None:
        rows, cols = np.nonzero(grid == colour)
        if not rows.size:
            return None
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        if inside:
            top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
            if top >= bottom or left >= right:
                return None
        return grid[top:bottom, left:right]

    return rule


def frame_inside(grid: np.ndarray) -> np.ndarray | None:
    """The inside of the largest rectangular frame of one colour: a 4-connected object of one
    colour that holds every cell of its bounding box's border (any colour, unlike
    ``colour_box``)."""
    best: tuple[int, np.ndarray] | None = None
    for s in shapes(grid, -1, False, True):
        height, width = s.bottom - s.top, s.right - s.left
        if height < 3 or width < 3:
            continue
        box = s.mask[s.top : s.bottom, s.left : s.right]
        framed = box[0].all() and box[-1].all() and box[:, 0].all() and box[:, -1].all()
        if framed and (best is None or height * width > best[0]):
            best = (height * width, grid[s.top + 1 : s.bottom - 1, s.left + 1 : s.right - 1])
    return None if best is None else best[1]


def learn_window(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[str, int, int]]:
    """Where every training output lies in its input at the same place, counted from one of the
    input's corners, as (corner, rows from it, columns from it); the outputs share one size."""
    if len({o.shape for _, o in pairs}) != 1:
        return []
    h, w = pairs[0][1].shape
    found = []
    for corner in ("top left", "top right", "bottom left", "bottom right"):
        places = None
        for grid, output in pairs:
            if grid.shape[0] < h or grid.shape[1] < w:
                return []
            here = {
                (r, c)
                for r in range(grid.shape[0] - h + 1)
                for c in range(grid.shape[1] - w + 1)
                if (_window(grid, corner, r, c, h, w) == output).all()
            }
            places = here if places is None else places & here
            if not places:
                break
        found += [(corner, r, c) for r, c in sorted(places or ())]
    return found[:4]


def _window(grid: np.ndarray, corner: str, r: int, c: int, h: int, w: int) -> np.ndarray:
    """The h by w window r rows and c columns in from ``corner``."""
    top = r if corner.startswith("top") else grid.shape[0] - h - r
    left = c if corner.endswith("left") else grid.shape[1] - w - c
    if top < 0 or left < 0:
        raise ValueError("the window lies outside the grid")
    return grid[top : top + h, left : left + w]


def marked(colour: int, painted_over: bool, objects_of: ObjectsOf = objects_on_background) -> Rule:
    """The one 8-connected object of any colours that holds ``colour`` (a marker), cut out, the
    marker's cells emptied or, ``painted_over``, in the object's most frequent other colour, and
    cropped to what is filled."""

    def rule(grid: np.ndarray) -> np.ndarray | None:
        background = background_colour(grid)
        if colour == background:
            return None
        holding = [s for s in objects_of(grid, True, False) if colour in s.colours]
        if len(holding) != 1:
            return None
        cut = holding[0].alone(grid, background)
        rest = (cut != background) & (cut != colour)
        if not rest.any():
            return None
        fill = int(np.bincount(cut[rest], minlength=10).argmax()) if painted_over else background
        kept = np.where(cut == colour, np.int8(fill), cut)
        rows, cols = np.nonzero(kept != background)
        return kept[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    return rule


# How gathered objects are laid out: side by side in the order of their left edges, one under
# another in the order of their tops, or along the axis over which they are spread the most.
GATHERINGS = ("across", "down", "along their spread")


def gathered(how: str, objects_of: ObjectsOf = objects_on_background) -> Rule:
    """The 8-connected objects of any colours, all of one box size (at least two), each cut out
    and laid next to the others as ``how`` says."""

    def rule(grid: np.ndarray) -> np.ndarray | None:
        found = objects_of(grid, True, False)
        if len(found) < 2 or len({(s.bottom - s.top, s.right - s.left) for s in found}) != 1:
            return None
        across = how == "across"
        if how == "along their spread":
            across = max(s.left for s in found) - min(s.left for s in found) >= max(s.top for s in found) - min(s.top for s in found)
        ordered = sorted(found, key=(lambda s: (s.left, s.top)) if across else (lambda s: (s.top, s.left)))
        background = background_colour(grid)
        return np.concatenate([s.alone(grid, background) for s in ordered], axis=1 if across else 0)

    return rule


def object_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    # Only tasks whose outputs are smaller than their inputs are cut-outs.
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    if not all(o.size < i.size for i, o in pairs):
        return
    # Each grid's objects of each kind, found once for all the rules below.
    objects_of: ObjectsOf = PerGrid(objects_on_background)
    yield "everything but the background", content
    yield "inside the largest frame of one colour", frame_inside
    for how in GATHERINGS:
        yield f"the objects laid side by side, {how}", gathered(how, objects_of)
    h, w = pairs[0][1].shape
    for corner, r, c in learn_window(pairs):
        yield (
            f"the {h}x{w} window {r} rows and {c} columns in from the {corner}",
            lambda g, k=corner, r=r, c=c, h=h, w=w: _window(g, k, r, c, h, w),
        )
    shared = set.intersection(*(set(np.unique(i).tolist()) for i, _ in pairs))
    for colour in sorted(shared):
        yield f"box of colour {colour}", colour_box(colour, inside=False)
        yield f"inside the frame of colour {colour}", colour_box(colour, inside=True)
        yield f"the object marked by colour {colour}, without the marker", marked(colour, False, objects_of)
        yield f"the object marked by colour {colour}, the marker in its colour", marked(colour, True, objects_of)
    for name, selector in SELECTORS.items():
        for diagonal in (True, False):
            for one_colour in (False, True):
                for alone in (False, True):
                    described = (
                        f"{name} {'8' if diagonal else '4'}-connected {'one-colour' if one_colour else 'any-colour'} object"
                        f"{' alone' if alone else ''}"
                    )
                    yield described, select_and_cut(selector, diagonal, one_colour, alone, objects_of)


def object_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The family's cut-outs that apply to the task, best score first, one per distinct grid."""
    return candidates_from_rules(train, test_input, object_rules(train))
