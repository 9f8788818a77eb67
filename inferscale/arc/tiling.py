"""The symmetry-and-tiling family of ARC solvers: outputs built from copies of the input.

- Growing: the output is the input scaled up, each colour to a block learned from the pairs;
  the input (or its two colours swapped) tiled with a symmetry chosen per tile, or laid out in its
  own shape at its filled, empty, rarest- or commonest-colour cells (a fractal); or the input
  scaled up by a count read off it (its colours, its filled cells), when the factor differs from
  pair to pair.
- Shrinking: the output is the input scaled down, each block read by majority or presence.
- Completing: the background cells filled from their images under a group of symmetries (a
  mirror, both mirrors, the quarter turns, ...), about the grid's centre or its content's.
- Repairing: cells of a mask colour (one the inputs have and the outputs never do) are filled
  from the symmetries or the periodic pattern the rest of the grid obeys; the answer is the
  repaired grid or just the repaired region.

Every rule's shape factors and mask colour are learned from the training pairs, and every
candidate is scored on them (``inferscale.arc.solvers.candidates_from_rules``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from inferscale.arc.solvers import SYMMETRIES, Candidate, Rule, as_array, candidates_from_rules
from inferscale.arc.tasks import MAX_SIDE, Grid

# The symmetries that keep a grid's shape whatever it is, for tiles of non-square inputs.
SHAPE_KEEPING = ("identity", "rotate 180", "flip rows", "flip columns")


def shape_ratio(pairs: Sequence[tuple[np.ndarray, np.ndarray]], grow: bool) -> tuple[int, int] | None:
    """The whole factors (rows, columns) by which every pair's output grows (or shrinks), when
    they are the same for every pair."""
    ratios = set()
    for source, target in pairs:
        big, small = (target, source) if grow else (source, target)
        if big.shape[0] % small.shape[0] or big.shape[1] % small.shape[1]:
            return None
        ratios.add((big.shape[0] // small.shape[0], big.shape[1] // small.shape[1]))
    if len(ratios) != 1:
        return None
    ratio = ratios.pop()
    return None if ratio == (1, 1) else ratio


def mask_colour(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> int | None:
    """The colour every input holds and no output does: the cells the task asks to fill."""
    common = None
    for source, target in pairs:
        missing = set(np.unique(source).tolist()) - set(np.unique(target).tolist())
        common = missing if common is None else common & missing
    return min(common) if common and len(common) == 1 else None


# Numbers read off a grid that may set the factor it is scaled up by.
SCALE_COUNTS = {
    "its colours": lambda g: int(np.count_nonzero(np.bincount(g.ravel(), minlength=10))) - 1,
    "its filled cells": lambda g: int((g != background_colour(g)).sum()),
}


def scaled_by_count(grid: np.ndarray, count: str) -> np.ndarray | None:
    """The grid scaled up by ``SCALE_COUNTS[count]``; None where the factor is below 1 or the
    result would exceed 30 cells a side."""
    factor = SCALE_COUNTS[count](grid)
    if factor < 1 or max(grid.shape) * factor > MAX_SIDE:
        return None
    return np.kron(grid, np.ones((factor, factor), dtype=np.int8))


def tiled(grid: np.ndarray, ratio: tuple[int, int], tile_symmetries: Sequence[str]) -> np.ndarray:
    rows = [
        np.concatenate([SYMMETRIES[tile_symmetries[r * ratio[1] + c]](grid) for c in range(ratio[1])], axis=1)
        for r in range(ratio[0])
    ]
    return np.concatenate(rows, axis=0)


def learn_tile_symmetries(pairs: Sequence[tuple[np.ndarray, np.ndarray]], ratio: tuple[int, int]) -> list[str]:
    """Per tile position, the symmetry of the input that agrees with most of that tile's cells."""
    square = all(s.shape[0] == s.shape[1] for s, _ in pairs)
    names = list(SYMMETRIES) if square else list(SHAPE_KEEPING)
    chosen = []
    for r in range(ratio[0]):
        for c in range(ratio[1]):

            def agreement(name: str, r: int = r, c: int = c) -> float:
                total = 0.0
                for source, target in pairs:
                    h, w = source.shape
                    total += float((SYMMETRIES[name](source) == target[r * h : (r + 1) * h, c * w : (c + 1) * w]).mean())
                return total

            chosen.append(max(names, key=agreement))
    return chosen


# Where a fractal places copies: the cells of the input that are filled, empty, of its rarest or of
# its commonest filled colour (or of a colour every input holds).
FRACTAL_PLACES = ("filled cells", "empty cells", "the rarest colour", "the commonest colour")


def fractal(grid: np.ndarray, copy: np.ndarray, where: str) -> np.ndarray | None:
    """The input laid out in its own shape: ``copy`` in the blocks of the cells ``where`` names,
    black (0) elsewhere."""
    counts = np.bincount(grid.ravel(), minlength=10)
    background = black_or_commonest(counts)
    counts[0] = 0  # black is never the rarest or commonest colour; another background may be
    filled = np.nonzero(counts)[0]
    if where == "filled cells":
        places = grid != background
    elif where == "empty cells":
        places = grid == background
    elif where.startswith("colour "):
        places = grid == int(where.removeprefix("colour "))
    elif filled.size < 2:
        return None  # rarest and commonest are the same colour: the rule reads nothing
    else:
        ranked = filled[np.argsort(counts[filled], kind="stable")]
        places = grid == (ranked[0] if where == "the rarest colour" else ranked[-1])
    return np.kron(places.astype(np.int8), copy)


def inverted(grid: np.ndarray) -> np.ndarray | None:
    """The grid's two colours swapped; None when it has more or fewer."""
    present = np.nonzero(np.bincount(grid.ravel(), minlength=10))[0]
    if present.size != 2:
        return None
    first, second = present.tolist()
    return np.where(grid == first, second, first).astype(np.int8)


def _then(grid: np.ndarray | None, step: Callable[[np.ndarray], np.ndarray | None]) -> np.ndarray | None:
    return None if grid is None else step(grid)


def learn_blocks(pairs: Sequence[tuple[np.ndarray, np.ndarray]], ratio: tuple[int, int]) -> dict[int, np.ndarray] | None:
    """Per input colour, the block of the ratio's size that each of its cells becomes on every
    training pair; None when a colour's cells become different blocks."""
    blocks: dict[int, np.ndarray] = {}
    for source, target in pairs:
        h, w = source.shape
        tiles = target.reshape(h, ratio[0], w, ratio[1]).transpose(0, 2, 1, 3)
        for colour in np.unique(source).tolist():
            found = tiles[source == colour]
            if (found != found[0]).any() or (colour in blocks and (blocks[colour] != found[0]).any()):
                return None
            blocks[colour] = found[0]
    return blocks


def _blocks_rule(pairs: Sequence[tuple[np.ndarray, np.ndarray]], ratio: tuple[int, int]) -> Rule:
    blocks = learn_blocks(pairs, ratio)

    def rule(grid: np.ndarray) -> np.ndarray | None:
        if blocks is None or any(colour not in blocks for colour in np.unique(grid).tolist()):
            return None  # a colour never seen could become any block
        h, w = grid.shape
        out = np.stack([blocks[colour] for colour in grid.ravel().tolist()]).reshape(h, w, *ratio)
        return out.transpose(0, 2, 1, 3).reshape(h * ratio[0], w * ratio[1])

    return rule


def block_reduce(grid: np.ndarray, ratio: tuple[int, int], how: str) -> np.ndarray | None:
    h, w = grid.shape
    if h % ratio[0] or w % ratio[1]:
        return None
    blocks = grid.reshape(h // ratio[0], ratio[0], w // ratio[1], ratio[1]).transpose(0, 2, 1, 3).reshape(h // ratio[0], w // ratio[1], -1)
    if how == "first":
        return blocks[:, :, 0]
    background = background_colour(grid)
    out = np.full(blocks.shape[:2], background, dtype=np.int8)
    for i in range(blocks.shape[0]):
        for j in range(blocks.shape[1]):
            cells = blocks[i, j]
            if how == "majority":
                out[i, j] = Counter(cells.tolist()).most_common(1)[0][0]
            else:  # "any": the block's colour other than the background, if it has one
                others = cells[cells != background]
                if others.size:
                    out[i, j] = Counter(others.tolist()).most_common(1)[0][0]
    return out


def black_or_commonest(counts: np.ndarray) -> int:
    """The colour cells with these counts per colour are drawn on: black (0) where they hold it,
    since small grids are often mostly their pattern, else their most frequent colour."""
    return 0 if counts[0] else int(counts.argmax())


def background_colour(grid: np.ndarray) -> int:
    """The most frequent colour (the lowest among equals)."""
    # A count per colour 0-9: every solver calls this on every grid it makes, and np.unique sorts.
    return int(np.bincount(grid.ravel(), minlength=10).argmax())


def mirror_maps(shape: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cell maps of mirror symmetries with any axis: row, column, both (a half turn), and the
    diagonal with any offset; each as (rows, columns) index arrays, -1 where the image falls off."""
    h, w = shape
    rows, cols = np.indices(shape)

    def clipped(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outside = (r < 0) | (r >= h) | (c < 0) | (c >= w)
        return np.where(outside, -1, r), np.where(outside, -1, c)

    for a in range(h // 2, 2 * h - 1 - h // 2):
        yield clipped(a - rows, cols)
    for b in range(w // 2, 2 * w - 1 - w // 2):
        yield clipped(rows, b - cols)
    for a in range(h // 2, 2 * h - 1 - h // 2):
        for b in range(w // 2, 2 * w - 1 - w // 2):
            yield clipped(a - rows, b - cols)
    for d in range(-2, 3):
        yield clipped(cols + d, rows - d)


def repair_by_symmetry(grid: np.ndarray, mask: int) -> np.ndarray | None:
    """Fills the mask cells from their images under every mirror symmetry the unmasked cells obey
    (exactly, over at least half the grid); None when some cell stays unfilled."""
    hidden = grid == mask
    if not hidden.any():
        return None
    filled = grid.copy()
    obeyed = []
    for r_map, c_map in mirror_maps(grid.shape):
        inside = r_map >= 0
        image = np.where(inside, grid[np.maximum(r_map, 0), np.maximum(c_map, 0)], mask)
        both = inside & ~hidden & (image != mask)
        if both.sum() >= grid.size / 2 and (grid[both] == image[both]).all():
            obeyed.append((r_map, c_map))
    for _ in range(3):  # images of images: a cell may be reachable only through another
        for r_map, c_map in obeyed:
            inside = r_map >= 0
            image = np.where(inside, filled[np.maximum(r_map, 0), np.maximum(c_map, 0)], mask)
            take = (filled == mask) & (image != mask)
            filled[take] = image[take]
    return None if (filled == mask).any() else filled


def repair_by_period(grid: np.ndarray, mask: int) -> np.ndarray | None:
    """Fills the mask cells from the smallest rectangular period the unmasked cells obey."""
    hidden = grid == mask
    if not hidden.any():
        return None
    h, w = grid.shape
    for area, pr, pc in sorted((pr * pc, pr, pc) for pr in range(1, h + 1) for pc in range(1, w + 1)):
        if (pr, pc) == (h, w) or area > grid.size // 2:
            break
        pattern = np.full((pr, pc), -1, dtype=np.int16)
        consistent = True
        for r in range(pr):
            for c in range(pc):
                seen = grid[r::pr, c::pc][~hidden[r::pr, c::pc]]
                if seen.size == 0:
                    consistent = False
                    break
                if (seen != seen[0]).any():
                    consistent = False
                    break
                pattern[r, c] = seen[0]
            if not consistent:
                break
        if consistent:
            return np.tile(pattern, (h // pr + 1, w // pc + 1))[:h, :w].astype(np.int8)
    return None


# Groups of symmetries an output may be completed under: each adds its images of the grid.
COMPLETIONS: dict[str, tuple[str, ...]] = {
    "its mirror across": ("flip columns",),
    "its mirror down": ("flip rows",),
    "its half turn": ("rotate 180",),
    "its two mirrors": ("flip columns", "flip rows", "rotate 180"),
    "its quarter turns": ("rotate 90", "rotate 180", "rotate 270"),
    "its diagonal mirror": ("transpose",),
    "every symmetry of the square": ("rotate 90", "rotate 180", "rotate 270", "flip rows", "flip columns", "transpose", "anti-transpose"),
}


def completed(grid: np.ndarray, group: str, around_content: bool) -> np.ndarray | None:
    """The grid's background cells filled from their images under the group's symmetries (about
    the grid's centre, or about the centre of the box its content spans); None where that changes
    nothing or a square symmetry meets a box that is not square."""
    background = background_colour(grid)
    out = grid.copy()
    if around_content:
        rows, cols = np.nonzero(grid != background)
        if not rows.size:
            return None
        box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    else:
        box = np.s_[:, :]
    part = out[box]
    if part.shape[0] != part.shape[1] and any(name not in SHAPE_KEEPING for name in COMPLETIONS[group]):
        return None
    original = part.copy()
    for name in COMPLETIONS[group]:
        image = SYMMETRIES[name](original)
        take = (part == background) & (image != background)
        part[take] = image[take]
    return None if (part == original).all() else out


def hidden_region(grid: np.ndarray, mask: int, repaired: np.ndarray | None) -> np.ndarray | None:
    if repaired is None:
        return None
    rows, cols = np.nonzero(grid == mask)
    return repaired[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def tiling_rules(train: Sequence[tuple[Grid, Grid]]) -> Iterator[tuple[str, Rule]]:
    pairs = [(as_array(i), as_array(o)) for i, o in train]
    grow = shape_ratio(pairs, grow=True)
    if grow is not None:
        yield "scale up", lambda g: np.kron(g, np.ones(grow, dtype=np.int8))
        symmetries = learn_tile_symmetries(pairs, grow)
        yield "tile " + "/".join(symmetries), lambda g: tiled(g, grow, symmetries)
        flipped = [(inverted(source), target) for source, target in pairs]
        if all(source is not None for source, _ in flipped):
            inverted_symmetries = learn_tile_symmetries(flipped, grow)
            yield (
                "tile inverted " + "/".join(inverted_symmetries),
                lambda g: _then(inverted(g), lambda i: tiled(i, grow, inverted_symmetries)),
            )
        yield "scale up by learned blocks", _blocks_rule(pairs, grow)
        shared = set.intersection(*(set(np.unique(source).tolist()) for source, _ in pairs)) - {0}
        for where in (*FRACTAL_PLACES, *(f"colour {c}" for c in sorted(shared))):
            yield f"fractal at {where}", lambda g, w=where: fractal(g, g, w) if g.shape == grow else None
            yield f"inverted fractal at {where}", lambda g, w=where: _then(inverted(g), lambda i: fractal(g, i, w)) if g.shape == grow else None
    for count, read in SCALE_COUNTS.items():
        if all(t.shape == (s.shape[0] * read(s), s.shape[1] * read(s)) for s, t in pairs):
            yield f"scale up by {count}", lambda g, c=count: scaled_by_count(g, c)
    shrink = shape_ratio(pairs, grow=False)
    if shrink is not None:
        for how in ("majority", "any", "first"):
            yield f"scale down by {how}", lambda g, how=how: block_reduce(g, shrink, how)
    if all(s.shape == t.shape for s, t in pairs):
        for group in COMPLETIONS:
            for around_content in (False, True):
                about = "its content's centre" if around_content else "the centre"
                yield f"completed by {group} about {about}", lambda g, k=group, a=around_content: completed(g, k, a)
    mask = mask_colour(pairs)
    if mask is not None:
        yield f"repair colour {mask} by symmetry", lambda g: repair_by_symmetry(g, mask)
        yield f"repair colour {mask} by period", lambda g: repair_by_period(g, mask)
        yield f"hidden region of colour {mask} by symmetry", lambda g: hidden_region(g, mask, repair_by_symmetry(g, mask))
        yield f"hidden region of colour {mask} by period", lambda g: hidden_region(g, mask, repair_by_period(g, mask))


def tiling_candidates(train: Sequence[tuple[Grid, Grid]], test_input: Grid) -> list[Candidate]:
    """The family's rules that apply to the task, best score first, one per distinct grid."""
    return candidates_from_rules(train, test_input, tiling_rules(train))
