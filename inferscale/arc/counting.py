"""The counting-and-selecting family of ARC solvers: outputs built from counts of the input's
objects and colours, or one object picked by a selector learned from the training pairs.

- Counts: a number read off the input (its objects, its filled cells, the cells or objects of one
  colour, its colours) sets the output's size (1 x n, n x 1, n x n) or how many cells of a
  fixed-size output are painted (in reading order, or along the diagonal); a colour read off the
  input (the most or least frequent, a fixed one, or the colour of an object a selector picks)
  paints them.
- Histograms: the input's colours ordered by how many cells each holds, as a row or column of
  colours or as bars of their counts, with or without the most frequent.
- Selection: the object whose cut-out (or itself alone on the background) is the output, picked
  in every pair by the same property (size, height, width, colours, cells of one colour, holes,
  how many objects share its look or colour, ...) being the largest, the smallest or the only
  one of its value.
Templates are checked against the training outputs first; only those that reproduce every pair
become rules. The background is the colour that is the most frequent in every training input
when they agree on one: a small test input may hold more of another.

**Bound.** For the counts, O(number features x colour features x templates) comparisons per pair
(about 32 x 12 x 5, and 4 kinds x 20 properties x 3 selectors for the fixed-size templates); for
the histograms one pass over the cells; for selection O(objects x 20 properties) per grid and
kind, a grid holding at most 900 objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from inferscale.arc.objects import Shape, shapes
from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import MAX_SIDE, Grid
from inferscale.arc.tiling import background_colour

# Object kinds: (8-connected, of one colour).
KINDS = ((True, True), (False, True), (True, False), (False, False))
SELECTIONS = ("largest", "smallest", "unique")
# The background of a grid in which every colour counts.
NO_BACKGROUND = -1
Background = Callable[[np.ndarray], int]


def task_background(grids: Sequence[np.ndarray]) -> Background:
    """The background of any grid of the task: the colour the most frequent in every training
    input when they agree on one, else each grid's own most frequent colour."""
    common = {background_colour(g) for g in grids}
    if len(common) == 1:
        colour = common.pop()
        return lambda g: colour
    return background_colour


def _kind(diagonal: bool, one_colour: bool) -> str:
    return f"{'8' if diagonal else '4'}-connected {'one-colour' if one_colour else 'any-colour'} object"


def _filled_counts(grid: np.ndarray, background: int) -> Counter[int]:
    return Counter(c for c in grid.ravel().tolist() if c != background)


def _holes(s: Shape) -> int:
    box = s.mask[s.top : s.bottom, s.left : s.right]
    return int((ndimage.binary_fill_holes(box) & ~box).sum())


def object_properties(grid: np.ndarray, objects: list[Shape]) -> dict[str, list[object]]:
    """Each property's value for every object of the grid, by property."""
    looks = [s.pattern(grid) for s in objects]
    look_counts, colour_counts = Counter(looks), Counter(s.colours for s in objects)
    found: dict[str, list[object]] = {
        "size": [s.size for s in objects],
        "height": [s.bottom - s.top for s in objects],
        "width": [s.right - s.left for s in objects],
        "box": [(s.bottom - s.top) * (s.right - s.left) for s in objects],
        "colours": [len(s.colours) for s in objects],
        "holes": [_holes(s) for s in objects],
        "objects of its look": [look_counts[look] for look in looks],
        "objects of its colours": [colour_counts[s.colours] for s in objects],
    }
    # Each object's colours counted within its box, not over the whole grid.
    per_colour = [
        np.bincount(s.cut(grid)[s.mask[s.top : s.bottom, s.left : s.right]], minlength=10)
        for s in objects
    ]
    for colour in range(10):
        found[f"cells of colour {colour}"] = [int(counts[colour]) for counts in per_colour]
    return found


def pick(values: list[object], how: str) -> list[int]:
    """The indices of the objects whose value is the largest, the smallest, or the one unique."""
    if not values:
        return []
    if how == "unique":
        counts = Counter(values)
        single = [i for i, v in enumerate(values) if counts[v] == 1]
        return single if len(single) == 1 else []
    best = max(values) if how == "largest" else min(values)  # type: ignore[type-var]
    return [i for i, v in enumerate(values) if v == best]


class Reader:
    """A task's grids read once each: their objects of each kind and those objects' properties."""

    def __init__(self, background: Background) -> None:
        self.background = background
        self.objects = PerGrid(lambda g, d, o: shapes(g, background(g), d, o))
        self.properties = PerGrid(lambda g, d, o: object_properties(g, self.objects(g, d, o)))

    def selected(
        self, grid: np.ndarray, diagonal: bool, one_colour: bool, name: str, how: str
    ) -> list[Shape]:
        """The objects whose property ``name`` is the largest, the smallest or the one unique."""
        objects = self.objects(grid, diagonal, one_colour)
        return [objects[i] for i in pick(self.properties(grid, diagonal, one_colour)[name], how)]

    def counts(self) -> dict[str, Callable[[np.ndarray], int]]:
        """Numbers read off a grid, by name."""
        found: dict[str, Callable[[np.ndarray], int]] = {
            f"{_kind(d, o)}s": lambda g, d=d, o=o: len(self.objects(g, d, o)) for d, o in KINDS
        }
        found["filled cells"] = lambda g: sum(_filled_counts(g, self.background(g)).values())
        found["colours"] = lambda g: len(_filled_counts(g, self.background(g)))
        for colour in range(10):
            found[f"cells of colour {colour}"] = lambda g, c=colour: int((g == c).sum())
            found[f"objects of colour {colour}"] = lambda g, c=colour: sum(
                s.colours == (c,) for s in self.objects(g, True, True)
            )
        return found

    def colours(self, selectors: bool) -> dict[str, Callable[[np.ndarray], int | None]]:
        """Colours read off a grid, by name (None where the grid has no single answer); with
        ``selectors``, also the colour of the object each selector picks."""

        def frequency(g: np.ndarray, most: bool) -> int | None:
            ranked = _filled_counts(g, self.background(g)).most_common()
            if not most:
                ranked.reverse()
            return (
                ranked[0][0]
                if ranked and (len(ranked) == 1 or ranked[0][1] != ranked[1][1])
                else None
            )

        found: dict[str, Callable[[np.ndarray], int | None]] = {
            "the most frequent colour": lambda g: frequency(g, True),
            "the least frequent colour": lambda g: frequency(g, False),
            **{f"colour {c}": lambda g, c=c: c for c in range(10)},
        }
        if selectors:
            for diagonal in (True, False):
                for name in self.properties_named():
                    for how in SELECTIONS:

                        def colour(
                            g: np.ndarray, d: bool = diagonal, n: str = name, h: str = how
                        ) -> int | None:
                            chosen = {s.colours for s in self.selected(g, d, True, n, h)}
                            return chosen.pop()[0] if len(chosen) == 1 else None

                        found[
                            f"the colour of the {_kind(diagonal, True)} whose {name} is {how}"
                        ] = colour
        return found

    @staticmethod
    def properties_named() -> list[str]:
        """The names of the properties a selector may compare."""
        return list(object_properties(np.zeros((1, 1), dtype=np.int8), []))


def built(
    n: int, colour: int | None, shape: str, fill: str, fixed: tuple[int, int], rest: int
) -> np.ndarray | None:
    """The output a count template makes: every cell painted, or n of them (in reading order or
    along the diagonal) on ``rest``."""
    size = {"1 x n": (1, n), "n x 1": (n, 1), "n x n": (n, n), "fixed": fixed}[shape]
    if colour is None or not (1 <= size[0] <= MAX_SIDE and 1 <= size[1] <= MAX_SIDE):
        return None
    if fill == "every cell":
        return np.full(size, colour, dtype=np.int8)
    out = np.full(size, rest, dtype=np.int8)
    if fill == "the diagonal":
        if n > min(size):
            return None
        out[np.arange(n), np.arange(n)] = colour
        return out
    if n > out.size:
        return None
    out.ravel()[:n] = colour
    return out


TEMPLATES = (
    ("fixed", "every cell"),
    ("fixed", "the first n cells"),
    ("fixed", "the diagonal"),
    ("n x n", "the diagonal"),
)
TEMPLATES += tuple((shape, "every cell") for shape in ("1 x n", "n x 1", "n x n"))


def count_rules(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], reader: Reader, rest: int
) -> Iterator[tuple[str, Rule]]:
    """The count templates that reproduce every training output."""
    outputs = [t for _, t in pairs]
    fixed = outputs[0].shape if all(t.shape == outputs[0].shape for t in outputs) else (0, 0)
    count_of = reader.counts()
    counts = {name: [f(s) for s, _ in pairs] for name, f in count_of.items()}
    for shape, fill in TEMPLATES:
        if (shape == "fixed") != (fixed != (0, 0)):
            continue
        # A fixed output painted all over uses no count: one count stands for all, and the colour
        # may come from any selector.
        uniform = (shape, fill) == ("fixed", "every cell")
        colour_of = reader.colours(selectors=uniform)
        for count_name, ns in list(counts.items())[:1] if uniform else counts.items():
            for colour_name, colour in colour_of.items():
                # Pair by pair, so that a template stops at the first pair it gets wrong.
                made = (
                    built(n, colour(s), shape, fill, fixed, rest)
                    for n, (s, _) in zip(ns, pairs, strict=True)
                )
                if all(
                    m is not None and m.shape == t.shape and (m == t).all()
                    for m, t in zip(made, outputs, strict=True)
                ):
                    yield (
                        f"{shape} output, {fill} in {colour_name}"
                        + ("" if uniform else f", n the {count_name}"),
                        lambda g, n=count_of[count_name], c=colour, s=shape, f=fill: built(
                            n(g), c(g), s, f, fixed, rest
                        ),
                    )


def _first_seen(grid: np.ndarray, background: int, across: bool) -> dict[int, int]:
    """Each filled colour's first column (``across``) or first row."""
    lines = grid.T if across else grid
    first: dict[int, int] = {}
    for index, line in enumerate(lines):
        for colour in line.tolist():
            if colour != background:
                first.setdefault(colour, index)
    return first


ORDERS = ("most cells first", "fewest cells first", "left to right", "top to bottom")


def histogram(
    grid: np.ndarray, background: int, layout: str, order: str, skip_first: bool, rest: int
) -> np.ndarray | None:
    """The grid's filled colours in ``order`` (of their cell counts, or of where each is first
    seen; ties: the lower colour first), as a line of colours or as bars of their counts."""
    counts = _filled_counts(grid, background)
    if order in ("left to right", "top to bottom"):
        first = _first_seen(grid, background, order == "left to right")
        ranked = sorted(counts.items(), key=lambda item: (first[item[0]], item[0]))
    else:
        sign = -1 if order == "most cells first" else 1
        ranked = sorted(counts.items(), key=lambda item: (sign * item[1], item[0]))
    ranked = ranked[int(skip_first) :]
    if not ranked or len(ranked) > MAX_SIDE:
        return None
    colours = np.array([c for c, _ in ranked], dtype=np.int8)
    if layout == "column":
        return colours[:, None]
    if layout == "row":
        return colours[None, :]
    height = max(count for _, count in ranked)
    if height > MAX_SIDE:
        return None
    bars = np.full((height, len(ranked)), rest, dtype=np.int8)
    for column, (colour, count) in enumerate(ranked):
        if layout == "bars up":
            bars[height - count :, column] = colour
        else:
            bars[:count, column] = colour
    return bars


def selection_rules(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], reader: Reader
) -> Iterator[tuple[str, Rule]]:
    """The selectors that pick, in every pair, objects that all cut out (or alone) as the output."""

    def cut(
        g: np.ndarray, diagonal: bool, one_colour: bool, name: str, how: str, alone: bool
    ) -> np.ndarray | None:
        made = [
            s.alone(g, reader.background(g)) if alone else s.cut(g)
            for s in reader.selected(g, diagonal, one_colour, name, how)
        ]
        if not made or any(m.shape != made[0].shape or (m != made[0]).any() for m in made[1:]):
            return None
        return made[0]

    for diagonal, one_colour in KINDS:
        for name in reader.properties_named():
            for how in SELECTIONS:
                for alone in (False, True):
                    chosen = (cut(s, diagonal, one_colour, name, how, alone) for s, _ in pairs)
                    if all(
                        c is not None and c.shape == t.shape and (c == t).all()
                        for c, (_, t) in zip(chosen, pairs, strict=True)
                    ):
                        yield (
                            f"the {_kind(diagonal, one_colour)} whose {name} is {how}{' alone' if alone else ''}",
                            lambda g, d=diagonal, o=one_colour, n=name, h=how, a=alone: cut(
                                g, d, o, n, h, a
                            ),
                        )


def counting_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    """The count templates and selectors that reproduce every pair, and the histograms, for a task
    whose outputs differ in size from their inputs."""
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    if any(s.shape == t.shape for s, t in pairs):
        return
    reader = Reader(task_background([s for s, _ in pairs]))
    rest = background_colour(np.concatenate([t.ravel() for _, t in pairs])[None])
    yield from count_rules(pairs, reader, rest)
    for layout in ("column", "row", "bars up", "bars down"):
        for order in ORDERS:
            for skip_first in (False, True):
                # A grid of colour bands has no background: every colour counts.
                for every in (False, True):
                    yield (
                        f"the {'colours' if every else 'filled colours'} as {layout}, {order}{', but the first' if skip_first else ''}",
                        lambda g, l=layout, o=order, s=skip_first, e=every: histogram(
                            g, NO_BACKGROUND if e else reader.background(g), l, o, s, rest
                        ),
                    )
    yield from selection_rules(pairs, reader)


def counting_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The count, histogram and selection rules that reproduce the training pairs, applied to the
    test input, best score first."""
    return candidates_from_rules(train, test_input, counting_rules(train))
