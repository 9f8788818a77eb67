"""The stamp family: a pattern learned per colour, drawn around each cell of that colour."""

from __future__ import annotations

import numpy as np

from inferscale.arc.stamps import stamp_candidates
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# A 2 gets 4s at its corners, a 1 gets 7s beside it; the 8 draws nothing.
CORNERS = [
    (
        g([[0, 0, 0, 0, 0, 0], [0, 2, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0], [8, 0, 0, 0, 0, 0]]),
        g([[4, 0, 4, 0, 0, 0], [0, 2, 0, 0, 0, 0], [4, 0, 4, 0, 7, 0], [0, 0, 0, 7, 1, 7], [0, 0, 0, 0, 7, 0], [8, 0, 0, 0, 0, 0]]),
    ),
    (
        g([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 2, 0], [0, 0, 0, 0, 0]]),
        g([[0, 7, 0, 0, 0], [7, 1, 7, 0, 0], [0, 7, 4, 0, 4], [0, 0, 0, 2, 0], [0, 0, 4, 0, 4]]),
    ),
]
CORNERS_TEST = g([[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
CORNERS_ANSWER = g([[2, 0, 0, 0], [0, 4, 7, 0], [0, 7, 1, 7], [0, 0, 7, 0]])


def test_each_colour_draws_its_own_stamp_around_its_cells() -> None:
    top = stamp_candidates(CORNERS, CORNERS_TEST)[0]
    assert (top.grid, top.score) == (CORNERS_ANSWER, 1.0) and top.rule == "a stamp per colour, radius 1"


def test_one_shape_drawn_in_each_cells_own_colour_reaches_colours_never_seen() -> None:
    # Every filled cell draws a cross of its own colour; the test's 6 appears in no training pair.
    train = [
        (g([[0, 0, 0], [0, 3, 0], [0, 0, 0]]), g([[0, 3, 0], [3, 3, 3], [0, 3, 0]])),
        (g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0]]), g([[0, 0, 0, 0], [0, 0, 5, 0], [0, 5, 5, 5], [0, 0, 5, 0]])),
    ]
    top = stamp_candidates(train, g([[0, 0, 0], [0, 0, 6], [0, 0, 0]]))[0]
    assert (top.grid, top.score) == (g([[0, 0, 6], [0, 6, 6], [0, 0, 6]]), 1.0)
    assert top.rule == "one stamp in each cell's colour, radius 1"


def test_a_stamp_is_drawn_on_the_background_only() -> None:
    # The 1's 7s would fall on the 5 beside it in the test input: the 5 stays.
    top = stamp_candidates(CORNERS, g([[0, 0, 0], [5, 1, 0], [0, 0, 0]]))[0]
    assert top.grid == g([[0, 7, 0], [5, 1, 7], [0, 7, 0]])


def test_a_pattern_that_grows_with_the_radius_is_no_stamp() -> None:
    # Each cell draws a line to the bottom edge: at every radius the stamp is longer, so the
    # family offers nothing rather than a stub of the line.
    train = [
        (g([[0, 3, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]), g([[0, 3, 0], [0, 3, 0], [0, 3, 0], [0, 3, 0], [0, 3, 0]])),
        (g([[4, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]), g([[4, 0, 0], [4, 0, 0], [4, 0, 0], [4, 0, 0], [4, 0, 0]])),
    ]
    assert stamp_candidates(train, g([[0, 0, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])) == []


def test_the_largest_object_is_copied_onto_each_lone_marker_by_its_centre() -> None:
    shape = [[0, 2, 0], [2, 1, 2], [0, 3, 0]]

    def placed(grid: list[list[int]], top: int, left: int) -> list[list[int]]:
        out = [row[:] for row in grid]
        for r, row in enumerate(shape):
            for c, colour in enumerate(row):
                if colour:
                    out[top + r][left + c] = colour
        return out

    blank = [[0] * 7 for _ in range(7)]
    first = placed(blank, 0, 0)
    first[5][4] = 5
    second = placed(blank, 4, 4)
    second[1][1] = 5
    train = [(g(first), g(placed(placed(blank, 0, 0), 4, 3))), (g(second), g(placed(placed(blank, 4, 4), 0, 0)))]
    test = placed(blank, 0, 4)
    test[5][1] = 5
    top = stamp_candidates(train, g(test))[0]
    assert (top.score, top.rule) == (1.0, "the largest object copied onto each lone 5, its centre on it")
    assert top.grid == g(placed(placed(blank, 0, 4), 4, 0))


def test_pairs_that_change_size_teach_no_stamp() -> None:
    assert stamp_candidates([(g([[1, 0]]), g([[1]]))], g([[1, 0]])) == []


def test_a_dense_30_by_30_task_stays_within_its_bounds() -> None:
    rng = np.random.default_rng(7)
    train = [(g(rng.integers(0, 10, (30, 30)).tolist()), g(rng.integers(0, 10, (30, 30)).tolist())) for _ in range(4)]
    found = stamp_candidates(train, g(rng.integers(0, 10, (30, 30)).tolist()))
    assert all(0.0 <= c.score <= 1.0 and np.array(c.grid).shape == (30, 30) for c in found)


def test_the_stamp_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_stamps", CORNERS, CORNERS_TEST)
    assert (g(grid), confidence) == (CORNERS_ANSWER, 1.0)
