"""The partition family of ARC solvers: grids split into equal cells by full lines of one colour.

Without such lines, a grid is cut into blocks of the training outputs' size when every pair
agrees on how many, else into copies of its smallest repeating block, else into one block per
cell of the outputs when they all have one size.

Many tasks draw a grid of cells separated by lines, and the answer is built from the cells:
- Overlays, one cell's size: the cells' filled positions combined (all, any, an odd number, none,
  exactly one), or the cells laid over one another, in an order of the cells or in an order of
  the colours learned from the training pairs (a colour on top wherever it met another). The
  cells after the first may be mirrored first (folding a grid in two).
- Selection: the first or the last cell, or the cell whose count of filled positions, of colours,
  of mirror symmetries or of cells sharing its pattern is the largest, the smallest or the one
  unique, cut out.
- Summaries: one output cell per cell (its colour, whether it is filled, its count of filled
  positions, whether that count is the largest or the smallest), or the input with each cell
  kept, emptied or filled with its colour by such a predicate.
- Summaries turned: the cells' colours as a small picture under a symmetry of the square.
- Copies: every cell of the output made from one source cell (the fullest, or the first), as it
  is or by a symmetry learned per position from the training pairs, or left empty or as it was.
A colour substitution learned from the pairs follows every rule (``candidates_from_rules``).

The background of the cells is 0 where the cells hold it, else their most frequent colour; when a
task's grids disagree with that, the most frequent colour is tried as well.

**Bound.** Finding the lines is one pass over the grid per colour that fills a whole row or
column (at most 10); finding the smallest repeating block, one comparison of the grid with a
tiling per pair of divisors of its sides (at most 64 for 30 by 30). A grid has at most 225 cells
between lines, 900 as blocks; each cell's features are read once per task and background. The
orders of cells are tried only for at most 4 cells (24 orders), and every other rule is linear in
the cells' positions.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from inferscale.arc.counting import pick
from inferscale.arc.per_grid import PerGrid
from inferscale.arc.solvers import SYMMETRIES, Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import Grid
from inferscale.arc.tiling import black_or_commonest

# The orders of cells laid over one another are all tried up to this many cells.
MAX_ORDERED_CELLS = 4
# The symmetries the cells after the first may undergo before an overlay: those that keep a
# cell's shape whatever it is.
FOLDS: dict[str, tuple[slice, slice]] = {
    # Each as the slices that apply it to every cell of a stack of cells at once.
    "identity": (slice(None), slice(None)),
    "flip rows": (slice(None, None, -1), slice(None)),
    "flip columns": (slice(None), slice(None, None, -1)),
    "rotate 180": (slice(None, None, -1), slice(None, None, -1)),
}
COMBINATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # Each takes which positions of each cell are filled (cells x height x width).
    "all": lambda filled: filled.all(axis=0),
    "any": lambda filled: filled.any(axis=0),
    "an odd number": lambda filled: filled.sum(axis=0) % 2 == 1,
    "none": lambda filled: ~filled.any(axis=0),
    "exactly one": lambda filled: filled.sum(axis=0) == 1,
}


@dataclass(frozen=True)
class Partition:
    """A grid cut by full lines of one colour into ``rows`` by ``cols`` cells of one shape."""

    # The cells in reading order, each a view of the grid.
    cells: tuple[np.ndarray, ...]
    # Each cell's (top, left) corner in the grid, in the same order.
    corners: tuple[tuple[int, int], ...]
    rows: int
    cols: int
    line: int
    # The colour the cells are drawn on.
    background: int
    # Each cell's features and predicates by background, read once: every rule of a task reads
    # them on every grid.
    read: dict[tuple[str, int], dict] = field(default_factory=dict, compare=False, repr=False)


# The colour a rule takes as a partition's background.
BackgroundOf = Callable[[Partition], int]
# Makes a rule of a grid from a function of the grid and its partition (None where it has none).
OnPartition = Callable[[Callable[[np.ndarray, Partition], np.ndarray | None]], Rule]


@dataclass(frozen=True)
class _Task:
    """What the rule makers read of one task, for one choice of background."""

    # The training inputs' partitions, and the training outputs.
    known: Sequence[Partition]
    outputs: Sequence[np.ndarray]
    background: BackgroundOf
    # Appended to every rule's name: which background it takes.
    suffix: str
    on_partition: OnPartition


def _colour_counts(cells: Sequence[np.ndarray]) -> np.ndarray:
    """How many cells of each colour the cells hold together."""
    return np.bincount(np.concatenate([c.ravel() for c in cells]), minlength=10)


def _most_frequent(p: Partition) -> int:
    """The most frequent colour in the cells."""
    return int(_colour_counts(p.cells).argmax())


def _runs(separators: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs of positions that are not separators, as (start, stop)."""
    found, start = [], None
    for position, is_line in enumerate([*separators.tolist(), True]):
        if not is_line and start is None:
            start = position
        elif is_line and start is not None:
            found.append((start, position))
            start = None
    return found


def split(grid: np.ndarray) -> Partition | None:
    """The grid's partition by full lines of one colour into at least two cells of one shape, or
    None. Where several colours would do, the one whose cells are not mostly of its colour."""
    for line in np.unique(grid).tolist():
        full_rows = (grid == line).all(axis=1)
        full_cols = (grid == line).all(axis=0)
        if not (full_rows.any() or full_cols.any()):
            continue
        row_runs, col_runs = _runs(full_rows), _runs(full_cols)
        if len(row_runs) * len(col_runs) < 2:
            continue
        heights = {b - a for a, b in row_runs}
        widths = {b - a for a, b in col_runs}
        if len(heights) != 1 or len(widths) != 1:
            continue
        corners = tuple((top, left) for top, _ in row_runs for left, _ in col_runs)
        h, w = heights.pop(), widths.pop()
        cells = tuple(grid[top : top + h, left : left + w] for top, left in corners)
        counts = _colour_counts(cells)
        if counts[line] * 2 > counts.sum():
            continue
        return Partition(cells, corners, len(row_runs), len(col_runs), line, black_or_commonest(counts))
    return None


def blocks(grid: np.ndarray, rows: int, cols: int) -> Partition | None:
    """The grid cut without lines into ``rows`` by ``cols`` equal blocks, or None where its sides
    are not multiples of those."""
    h, w = grid.shape
    if h % rows or w % cols:
        return None
    bh, bw = h // rows, w // cols
    corners = tuple((r * bh, c * bw) for r in range(rows) for c in range(cols))
    cells = tuple(grid[top : top + bh, left : left + bw] for top, left in corners)
    return Partition(cells, corners, rows, cols, -1, black_or_commonest(np.bincount(grid.ravel(), minlength=10)))


def repeats(grid: np.ndarray) -> Partition | None:
    """The grid as copies of its smallest repeating block (at least two copies), or None."""
    h, w = grid.shape
    for rows, cols in sorted(
        ((r, c) for r in range(1, h + 1) for c in range(1, w + 1) if h % r == 0 and w % c == 0 and r * c > 1),
        key=lambda rc: -rc[0] * rc[1],
    ):
        bh, bw = h // rows, w // cols
        if (np.tile(grid[:bh, :bw], (rows, cols)) == grid).all():
            return blocks(grid, rows, cols)
    return None


def block_layout(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[int, int] | None:
    """How many blocks of its output's size each training input holds down and across, when
    that is the same whole numbers (at least two blocks) in every pair."""
    layouts = set()
    for grid, output in pairs:
        (h, w), (oh, ow) = grid.shape, output.shape
        if h % oh or w % ow:
            return None
        layouts.add((h // oh, w // ow))
    if len(layouts) != 1:
        return None
    rows, cols = layouts.pop()
    return (rows, cols) if rows * cols >= 2 else None


def _colour(cell: np.ndarray, background: int) -> int:
    """The cell's most frequent colour other than the background (the background if none)."""
    counts = np.bincount(cell.ravel(), minlength=10)
    counts[background] = 0
    return int(counts.argmax()) if counts.any() else background


def _features(p: Partition, background: int) -> dict[str, list[int]]:
    """Numbers read off each cell, by name, in reading order (read once per background)."""
    if ("features", background) not in p.read:
        p.read["features", background] = _read_features(p, background)
    return p.read["features", background]


def _read_features(p: Partition, background: int) -> dict[str, list[int]]:
    filled = (np.stack(p.cells) != background).reshape(len(p.cells), -1).sum(axis=1).tolist()
    colours = [len(set(c.ravel().tolist()) - {background}) for c in p.cells]
    looks = Counter(c.tobytes() for c in p.cells)
    return {
        "filled positions": filled,
        "colours": colours,
        "cells sharing its pattern": [looks[c.tobytes()] for c in p.cells],
        "mirror symmetries": [_mirror_symmetries(c) for c in p.cells],
    }


def _mirror_symmetries(cell: np.ndarray) -> int:
    """How many of the mirrors (left-right, top-bottom, both diagonals) leave the cell as it is."""
    mirrored = [cell[:, ::-1], cell[::-1], cell.T, np.rot90(cell, 2).T]
    return sum(m.shape == cell.shape and bool((m == cell).all()) for m in mirrored)


def _predicates(p: Partition, background: int) -> dict[str, list[bool]]:
    """Yes-or-no facts of each cell, by name, in reading order (read once per background)."""
    if ("predicates", background) not in p.read:
        p.read["predicates", background] = _read_predicates(p, background)
    return p.read["predicates", background]


def _read_predicates(p: Partition, background: int) -> dict[str, list[bool]]:
    found: dict[str, list[bool]] = {}
    for name, values in _features(p, background).items():
        for how in ("largest", "smallest"):
            chosen = set(pick(list(values), how))
            found[f"its {name} are the {how}"] = [i in chosen for i in range(len(values))]
    found["it holds anything"] = [bool(v) for v in _features(p, background)["filled positions"]]
    return found


def _layered(cells: Sequence[np.ndarray], background: int) -> np.ndarray:
    """The cells laid over one another, the first on top."""
    out = np.full(cells[0].shape, background, dtype=np.int8)
    for cell in reversed(cells):
        out = np.where(cell != background, cell, out)
    return out


def learn_colour_order(pairs: Sequence[tuple[Partition, np.ndarray, int]]) -> list[int] | None:
    """An order of the colours, topmost first, such that wherever the cells of a training input
    meet, the output shows the topmost of their colours; None when no order explains every pair."""
    beats: set[tuple[int, int]] = set()
    for p, output, background in pairs:
        if output.shape != p.cells[0].shape:
            return None
        stacked = np.stack(p.cells).reshape(len(p.cells), -1)
        for position, shown in enumerate(output.ravel().tolist()):
            present = set(stacked[:, position].tolist()) - {background}
            if not present:
                if shown != background:
                    return None
                continue
            if shown not in present:
                return None
            beats.update((shown, other) for other in present - {shown})
    colours = sorted({c for pair in beats for c in pair})
    order: list[int] = []
    while colours:
        # The colours no remaining colour beats; a cycle leaves none.
        top = [c for c in colours if not any((other, c) in beats for other in colours if other != c)]
        if not top:
            return None
        order.extend(top)
        colours = [c for c in colours if c not in top]
    return order


def _by_colour_order(p: Partition, order: Sequence[int], background: int) -> np.ndarray:
    # Each colour's height, the topmost highest; colours the training pairs never showed meeting
    # rank below every known one, and the background below them all.
    height = np.zeros(10, dtype=np.int64)
    height[list(order)] = np.arange(len(order), 0, -1)
    height[background] = -1
    stacked = np.stack(p.cells)
    top = height[stacked].argmax(axis=0)
    return np.take_along_axis(stacked, top[None], axis=0)[0]


def _summary(p: Partition, background: int, feature: str) -> np.ndarray:
    """One output cell per cell: a number read off it."""
    if feature == "colour":
        values = [_colour(c, background) for c in p.cells]
    elif feature == "holds anything":
        values = [int((c != background).any()) for c in p.cells]
    elif feature.startswith("is "):
        values = [int(v) for v in _predicates(p, background)[feature[3:]]]
    else:
        values = [min(v, 9) for v in _features(p, background)[feature]]
    return np.array(values, dtype=np.int8).reshape(p.rows, p.cols)


def _painted(grid: np.ndarray, p: Partition, background: int, chosen: Sequence[bool], action: str) -> np.ndarray:
    """The grid with each chosen cell filled with its colour (or kept) and every other cell
    emptied (or kept), as ``action`` says."""
    out = grid.copy()
    h, w = p.cells[0].shape
    for (top, left), cell, yes in zip(p.corners, p.cells, chosen, strict=True):
        area = out[top : top + h, left : left + w]
        if yes and action.startswith("fill"):
            area[...] = _colour(cell, background)
        elif not yes and action.endswith("empty the others"):
            area[...] = background
    return out


def _source(p: Partition, background: int, which: str) -> np.ndarray | None:
    if which == "the first":
        return p.cells[0]
    fullest = pick(_features(p, background)["filled positions"], "largest")
    return p.cells[fullest[0]] if len(fullest) == 1 else None


def learn_copies(
    pairs: Sequence[tuple[Partition, np.ndarray, int]], which: str
) -> list[str] | None:
    """For each cell position, what the output's cell there is in every training pair: a
    symmetry of the source cell, "empty", or "kept" (as it was); None where no one choice holds."""
    layouts = {(p.rows, p.cols, p.cells[0].shape) for p, _, _ in pairs}
    if len(layouts) != 1:
        return None
    choices: list[str] = []
    for position in range(len(pairs[0][0].cells)):
        fitting = None
        for p, output, background in pairs:
            source = _source(p, background, which)
            if source is None:
                return None
            top, left = p.corners[position]
            h, w = p.cells[0].shape
            if output.shape[0] < top + h or output.shape[1] < left + w:
                return None
            wanted = output[top : top + h, left : left + w]
            here = {"kept"} if (wanted == p.cells[position]).all() else set()
            if (wanted == background).all():
                here.add("empty")
            here |= {
                name
                for name, symmetry in SYMMETRIES.items()
                if symmetry(source).shape == wanted.shape and (symmetry(source) == wanted).all()
            }
            fitting = here if fitting is None else fitting & here
            if not fitting:
                return None
        assert fitting is not None
        # The simplest choice: as it was, then empty, then the symmetries in their order.
        choices.append(next(c for c in ("kept", "empty", *SYMMETRIES) if c in fitting))
    return choices


def _copied(grid: np.ndarray, p: Partition, background: int, which: str, choices: Sequence[str]) -> np.ndarray | None:
    source = _source(p, background, which)
    if source is None or len(choices) != len(p.cells):
        return None
    out = grid.copy()
    h, w = p.cells[0].shape
    for (top, left), choice in zip(p.corners, choices, strict=True):
        if choice == "kept":
            continue
        made = np.full((h, w), background, np.int8) if choice == "empty" else SYMMETRIES[choice](source)
        if made.shape != (h, w):
            return None
        out[top : top + h, left : left + w] = made
    return out


def partition_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    """The rules worth trying on a task whose training inputs are all partitioned."""
    inputs = [as_array(i) for i, _ in train]
    outputs = [as_array(o) for _, o in train]
    partitioned: Callable[[np.ndarray], Partition | None] = PerGrid(split)
    parts = [partitioned(g) for g in inputs]
    if any(p is None for p in parts):
        layout = block_layout(list(zip(inputs, outputs, strict=True)))
        partitioned = PerGrid(repeats) if layout is None else PerGrid(lambda g: blocks(g, *layout))
        parts = [partitioned(g) for g in inputs]
    if any(p is None for p in parts):
        # One block per output cell, when every output has the same size.
        sizes = {o.shape for o in outputs}
        if len(sizes) != 1:
            return
        counted = sizes.pop()
        if counted[0] * counted[1] < 2:
            return
        partitioned = PerGrid(lambda g: blocks(g, *counted) if g.size > counted[0] * counted[1] else None)
        parts = [partitioned(g) for g in inputs]
        if any(p is None for p in parts):
            return
    known = [p for p in parts if p is not None]
    backgrounds: dict[str, BackgroundOf] = {"": lambda p: p.background}
    if any(_most_frequent(p) != p.background for p in known):
        backgrounds[" (on the most frequent colour)"] = _most_frequent

    def on_partition(make: Callable[[np.ndarray, Partition], np.ndarray | None]) -> Rule:
        def rule(grid: np.ndarray) -> np.ndarray | None:
            p = partitioned(grid)
            return None if p is None else make(grid, p)

        return rule

    cell_sized = all(o.shape == p.cells[0].shape for o, p in zip(outputs, known, strict=True))
    summary_sized = all(o.shape == (p.rows, p.cols) for o, p in zip(outputs, known, strict=True))
    same_sized = all(o.shape == i.shape for o, i in zip(outputs, inputs, strict=True))
    for suffix, bg in backgrounds.items():
        task = _Task(known, outputs, bg, suffix, on_partition)
        if cell_sized:
            yield from _overlay_rules(task)
            yield from _selection_rules(task)
        if summary_sized:
            for feature in ("colour", "holds anything", "filled positions", "colours", *(
                f"is {name}" for name in _predicates(known[0], known[0].background)
            )):
                yield (
                    f"each cell's {feature}{suffix}",
                    on_partition(lambda g, p, f=feature, b=bg: _summary(p, b(p), f)),
                )
            # The cells' colours as a picture, which the output may show turned or mirrored.
            for name, symmetry in SYMMETRIES.items():
                if name != "identity":
                    yield (
                        f"each cell's colour, {name}{suffix}",
                        on_partition(lambda g, p, t=symmetry, b=bg: t(_summary(p, b(p), "colour"))),
                    )
        if same_sized:
            yield from _same_size_rules(task)


def _overlay_rules(task: _Task) -> Iterator[tuple[str, Rule]]:
    known, outputs, bg, suffix, on_partition = task.known, task.outputs, task.background, task.suffix, task.on_partition
    counts = {len(p.cells) for p in known}
    ordered = counts.pop() if len(counts) == 1 else MAX_ORDERED_CELLS + 1
    for fold in FOLDS:

        def folded(p: Partition, fold: str = fold) -> np.ndarray:
            """The cells stacked, every cell after the first under the fold."""
            stacked = np.stack(p.cells)
            stacked[1:] = stacked[1:][(slice(None), *FOLDS[fold])].copy()
            return stacked

        then = "" if fold == "identity" else f", the later cells under {fold}"
        for name, combine in COMBINATIONS.items():
            yield (
                f"the positions filled in {name} of the cells{then}{suffix}",
                on_partition(lambda g, p, c=combine, f=folded, b=bg: c(f(p) != b(p)).astype(np.int8)),
            )
        if ordered <= MAX_ORDERED_CELLS:
            for order in itertools.permutations(range(ordered)):
                yield (
                    f"the cells laid over one another in the order {order}{then}{suffix}",
                    on_partition(
                        lambda g, p, o=order, f=folded, b=bg: _layered(f(p)[list(o)], b(p))
                        if len(p.cells) == len(o)
                        else None
                    ),
                )
    colour_order = learn_colour_order([(p, o, bg(p)) for p, o in zip(known, outputs, strict=True)])
    if colour_order is not None:
        yield (
            f"the cells laid over one another, colours in the order {colour_order}{suffix}",
            on_partition(lambda g, p, o=colour_order, b=bg: _by_colour_order(p, o, b(p))),
        )


def _selection_rules(task: _Task) -> Iterator[tuple[str, Rule]]:
    bg, suffix, on_partition = task.background, task.suffix, task.on_partition
    for index, which in ((0, "first"), (-1, "last")):
        yield f"the {which} cell{suffix}", on_partition(lambda g, p, i=index: p.cells[i].copy())
    for feature in ("filled positions", "colours", "cells sharing its pattern", "mirror symmetries"):
        for how in ("largest", "smallest", "unique"):

            def selected(g: np.ndarray, p: Partition, f: str = feature, h: str = how) -> np.ndarray | None:
                chosen = pick(_features(p, bg(p))[f], h)
                return p.cells[chosen[0]].copy() if len(chosen) == 1 else None

            yield f"the cell whose {feature} are the {how}{suffix}", on_partition(selected)


def _same_size_rules(task: _Task) -> Iterator[tuple[str, Rule]]:
    known, outputs, bg, suffix, on_partition = task.known, task.outputs, task.background, task.suffix, task.on_partition
    for name in _predicates(known[0], known[0].background):
        for action in ("fill, empty the others", "fill, keep the others", "keep, empty the others"):
            yield (
                f"the cells where {name}: {action}{suffix}",
                on_partition(lambda g, p, n=name, a=action, b=bg: _painted(g, p, b(p), _predicates(p, b(p))[n], a)),
            )
    for which in ("the fullest", "the first"):
        yield (
            f"every cell becomes {which} cell{suffix}",
            on_partition(lambda g, p, w=which, b=bg: _copied(g, p, b(p), w, ["identity"] * len(p.cells))),
        )
        choices = learn_copies([(p, o, bg(p)) for p, o in zip(known, outputs, strict=True)], which)
        if choices is not None:
            yield (
                f"each cell copied from {which} cell: {', '.join(choices)}{suffix}",
                on_partition(lambda g, p, w=which, c=choices, b=bg: _copied(g, p, b(p), w, c)),
            )


def partition_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """Every partition rule with its learned colours, best score first, one per distinct grid."""
    return candidates_from_rules(train, test_input, partition_rules(train))
