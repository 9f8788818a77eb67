"""The enclosure family: regions enclosed by walls filled, by a colour learned from the training pairs."""

from __future__ import annotations

import pytest

from inferscale.arc.enclosure import enclosure_candidates, enclosure_rules
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# The background enclosed by any shape becomes 4; open background stays.
HOLES = [
    (
        g([[1, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 1, 1, 0, 1], [0, 0, 0, 0, 1]]),
        g([[1, 1, 1, 0, 0], [1, 4, 1, 0, 0], [1, 1, 1, 0, 1], [0, 0, 0, 0, 1]]),
    ),
    (
        g([[0, 2, 2, 2, 2], [0, 2, 0, 0, 2], [0, 2, 2, 2, 2], [0, 0, 0, 0, 0]]),
        g([[0, 2, 2, 2, 2], [0, 2, 4, 4, 2], [0, 2, 2, 2, 2], [0, 0, 0, 0, 0]]),
    ),
]
TEST = g([[3, 3, 3, 3, 0], [3, 0, 0, 3, 0], [3, 0, 3, 3, 0], [3, 3, 3, 0, 0], [0, 0, 0, 0, 0]])
ANSWER = g([[3, 3, 3, 3, 0], [3, 4, 4, 3, 0], [3, 4, 3, 3, 0], [3, 3, 3, 0, 0], [0, 0, 0, 0, 0]])


def test_enclosed_background_is_filled_with_the_learned_colour_whatever_the_walls_colour() -> None:
    best = enclosure_candidates(HOLES, TEST)[0]
    assert best.grid == ANSWER and best.score == 1.0 and best.rule.endswith("with one colour")


def test_a_pair_without_an_enclosed_region_is_left_as_it_was_and_the_fill_is_still_learned() -> None:
    open_shape = (g([[1, 1, 0], [1, 0, 0], [0, 0, 0]]), g([[1, 1, 0], [1, 0, 0], [0, 0, 0]]))
    best = enclosure_candidates([*HOLES, open_shape], TEST)[0]
    assert best.grid == ANSWER and best.score == 1.0 and best.rule.endswith("with one colour")


def test_two_pixels_of_a_colour_span_a_rectangle_filled_with_it() -> None:
    train = [
        (g([[1, 0, 0], [0, 0, 0], [0, 0, 1]]), g([[1, 1, 1], [1, 1, 1], [1, 1, 1]])),
        (g([[0, 2, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]]), g([[0, 2, 2, 2], [0, 2, 2, 2], [0, 0, 0, 0]])),
    ]
    best = enclosure_candidates(train, g([[3, 0, 0, 0], [0, 3, 0, 4], [0, 0, 0, 4], [0, 0, 0, 0]]))[0]
    assert best.grid == g([[3, 3, 0, 0], [3, 3, 0, 4], [0, 0, 0, 4], [0, 0, 0, 0]]) and best.score == 1.0
    assert best.rule == "fill the box of each colour's cells with it"


def test_the_largest_region_and_the_smallest_take_their_own_colours_enclosed_or_not() -> None:
    # Walls of 5 cut the grid into rooms that reach the border: the largest becomes 8, the
    # smallest 7, the others stay; sizes differ from pair to pair, so no table by size fits.
    train = [
        (g([[0, 5, 0, 0, 5, 0, 0, 0]] * 2), g([[7, 5, 0, 0, 5, 8, 8, 8]] * 2)),
        (g([[0, 0, 0, 0, 5, 0, 5, 0, 0]] * 2), g([[8, 8, 8, 8, 5, 7, 5, 0, 0]] * 2)),
    ]
    best = enclosure_candidates(train, g([[0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 0, 0]] * 2))[0]
    assert best.score == 1.0 and best.rule.endswith("a colour by its being the largest, the smallest or neither")
    assert best.grid == g([[7, 7, 5, 0, 0, 0, 5, 8, 8, 8, 8, 8]] * 2)


def test_the_edge_of_the_box_a_colours_cells_span_is_drawn_in_a_learned_colour() -> None:
    train = [
        (g([[8, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 8], [0, 0, 0, 0]]), g([[8, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 8], [0, 0, 0, 0]])),
        (g([[0, 0, 0, 0, 0], [0, 8, 0, 0, 0], [0, 0, 0, 0, 8], [0, 0, 0, 0, 0], [0, 0, 8, 0, 0]]),
         g([[0, 0, 0, 0, 0], [0, 8, 1, 1, 1], [0, 1, 0, 0, 8], [0, 1, 0, 0, 1], [0, 1, 8, 1, 1]])),
    ]
    best = enclosure_candidates(train, g([[0, 0, 0, 0, 0], [0, 0, 8, 0, 0], [0, 0, 0, 0, 0], [8, 0, 0, 0, 8]]))[0]
    assert (best.score, best.rule) == (1.0, "outline the box of each colour's cells with 1")
    assert best.grid == g([[0, 0, 0, 0, 0], [1, 1, 8, 1, 1], [1, 0, 0, 0, 1], [8, 1, 1, 1, 8]])


def test_each_enclosed_region_takes_the_colour_its_size_calls_for() -> None:
    # One-cell holes become 6, two-cell holes 7.
    by_size = [
        (
            g([[1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1, 0], [1, 1, 1, 1, 1, 1, 0]]),
            g([[1, 1, 1, 1, 1, 1, 1], [1, 6, 1, 7, 7, 1, 0], [1, 1, 1, 1, 1, 1, 0]]),
        ),
        (
            g(
                [
                    [0, 1, 1, 1, 1, 0],
                    [0, 1, 0, 0, 1, 0],
                    [0, 1, 1, 1, 1, 0],
                    [0, 1, 0, 1, 0, 0],
                    [0, 1, 1, 1, 0, 0],
                ]
            ),
            g(
                [
                    [0, 1, 1, 1, 1, 0],
                    [0, 1, 7, 7, 1, 0],
                    [0, 1, 1, 1, 1, 0],
                    [0, 1, 6, 1, 0, 0],
                    [0, 1, 1, 1, 0, 0],
                ]
            ),
        ),
    ]
    best = enclosure_candidates(
        by_size, g([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 0, 1], [0, 0, 1, 1, 1]])
    )[0]
    assert (
        best.grid == g([[1, 1, 1, 1, 1], [1, 6, 1, 7, 1], [1, 1, 1, 7, 1], [0, 0, 1, 1, 1]])
        and best.score == 1.0
    )
    assert best.rule.endswith("a colour by its size")


def test_a_seed_floods_the_room_it_stands_in() -> None:
    seeded = [
        (
            g([[0, 0, 5, 0, 0], [0, 3, 5, 0, 0], [5, 5, 5, 0, 0], [0, 0, 0, 0, 0]]),
            g([[3, 3, 5, 0, 0], [3, 3, 5, 0, 0], [5, 5, 5, 0, 0], [0, 0, 0, 0, 0]]),
        ),
        (
            g([[0, 0, 0, 5, 0], [0, 0, 0, 5, 4], [0, 0, 0, 5, 0], [0, 0, 0, 5, 0]]),
            g([[0, 0, 0, 5, 4], [0, 0, 0, 5, 4], [0, 0, 0, 5, 4], [0, 0, 0, 5, 4]]),
        ),
    ]
    best = enclosure_candidates(
        seeded, g([[0, 0, 0, 5, 0, 0], [0, 0, 0, 5, 0, 0], [5, 5, 5, 5, 0, 0], [0, 0, 0, 0, 0, 2]])
    )[0]
    assert (
        best.grid
        == g([[0, 0, 0, 5, 2, 2], [0, 0, 0, 5, 2, 2], [5, 5, 5, 5, 2, 2], [2, 2, 2, 2, 2, 2]])
        and best.score == 1.0
    )


def test_the_background_in_a_shapes_box_takes_the_shapes_colour() -> None:
    boxed = [
        (
            g([[0, 0, 0, 0], [0, 3, 0, 3], [0, 0, 3, 0]]),
            g([[0, 0, 0, 0], [0, 3, 3, 3], [0, 3, 3, 3]]),
        ),
        (g([[2, 0, 0], [0, 2, 0], [0, 0, 0]]), g([[2, 2, 0], [2, 2, 0], [0, 0, 0]])),
    ]
    best = enclosure_candidates(boxed, g([[0, 0, 0, 0], [0, 0, 4, 0], [0, 4, 0, 0], [0, 0, 0, 0]]))[
        0
    ]
    assert best.grid == g(
        [[0, 0, 0, 0], [0, 4, 4, 0], [0, 4, 4, 0], [0, 0, 0, 0]]
    ) and best.rule.endswith("with their colour")


def test_walls_never_change_so_a_colour_that_changes_is_never_taken_for_the_walls() -> None:
    names = [name for name, _ in enclosure_rules([(g([[1, 0], [0, 0]]), g([[2, 0], [0, 0]]))])]
    assert names and not any(
        "walls of colour 1" in n or "walls of every filled cell" in n for n in names
    )


@pytest.mark.integration
def test_black_regions_are_read_between_every_other_colour_even_where_black_is_not_the_most_frequent() -> None:
    # Black cells walled in by 1s and 3s become 5; black cells that reach the border stay.
    train = [
        (g([[3, 3, 3, 1], [3, 0, 1, 0], [1, 3, 3, 3], [0, 3, 1, 1]]), g([[3, 3, 3, 1], [3, 5, 1, 0], [1, 3, 3, 3], [0, 3, 1, 1]])),
        (g([[1, 1, 3, 0], [1, 0, 0, 3], [3, 1, 1, 3], [3, 3, 0, 3]]), g([[1, 1, 3, 0], [1, 5, 5, 3], [3, 1, 1, 3], [3, 3, 0, 3]])),
    ]
    top = enclosure_candidates(train, g([[0, 3, 1, 3], [3, 1, 0, 1], [1, 0, 3, 3], [3, 1, 3, 0]]))[0]
    assert top.score == 1.0 and "every non-black cell" in top.rule
    assert top.grid == g([[0, 3, 1, 3], [3, 1, 5, 1], [1, 5, 3, 3], [3, 1, 3, 0]])


def test_the_enclosure_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_enclosure", HOLES, TEST)
    assert (g(grid), confidence) == (ANSWER, 1.0)