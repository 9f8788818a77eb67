"""The in-place object family: objects recoloured by a learned property, moved, fallen and mirrored where they stand."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc.object_transforms import (
    Objects,
    learn_recolouring,
    object_transform_candidates,
    recolour_objects,
)
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# Objects recoloured by their size's rank: the largest 1, the next 2, the next 3.
RANKED = [
    (
        g([[5, 5, 5, 0, 0], [0, 0, 0, 0, 5], [5, 5, 0, 0, 5]]),
        g([[1, 1, 1, 0, 0], [0, 0, 0, 0, 2], [2, 2, 0, 0, 2]]),
    ),
    (
        g([[5, 0, 5, 5, 5], [5, 0, 0, 0, 0], [5, 0, 5, 0, 0], [5, 0, 0, 0, 0]]),
        g([[1, 0, 2, 2, 2], [1, 0, 0, 0, 0], [1, 0, 3, 0, 0], [1, 0, 0, 0, 0]]),
    ),
]
TEST = g([[5, 5, 0, 0, 0], [0, 0, 0, 5, 0], [5, 0, 0, 5, 0], [5, 0, 0, 5, 0]])
ANSWER = g([[2, 2, 0, 0, 0], [0, 0, 0, 1, 0], [2, 0, 0, 1, 0], [2, 0, 0, 1, 0]])


def test_objects_are_recoloured_by_the_rank_of_their_size() -> None:
    best = object_transform_candidates(RANKED, TEST)[0]
    assert (
        best.grid == ANSWER
        and best.score == 1.0
        and best.rule.endswith("by size rank from the largest")
    )


def test_a_recolouring_table_is_refused_when_a_value_takes_two_colours_or_unseen_at_test() -> None:
    arrays = [(np.array(i, dtype=np.int8), np.array(o, dtype=np.int8)) for i, o in RANKED]
    found = Objects()
    # A three-cell object becomes 1 in the first pair and 2 in the second: size is not the rule.
    assert learn_recolouring(arrays, found, "size", True, True) is None
    by_size = learn_recolouring(arrays[:1], found, "size", True, True)
    assert by_size == {3: 1, 2: 2}
    # A five-cell object: no object of that size was ever seen, so nothing says its colour.
    assert (
        recolour_objects(
            np.array([[5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0]], dtype=np.int8),
            found,
            "size",
            True,
            True,
            by_size,
        )
        is None
    )


def test_an_object_moves_towards_the_anchor_it_will_touch_whichever_side_it_lies() -> None:
    towards = [
        (g([[2, 0, 0, 0, 8], [0, 0, 0, 0, 8]]), g([[0, 0, 0, 2, 8], [0, 0, 0, 0, 8]])),
        (
            g([[0, 8, 8], [0, 0, 0], [0, 0, 0], [0, 2, 0]]),
            g([[0, 8, 8], [0, 2, 0], [0, 0, 0], [0, 0, 0]]),
        ),
    ]
    best = object_transform_candidates(towards, g([[0, 0, 0, 0], [8, 0, 0, 2], [8, 0, 0, 0]]))[0]
    assert best.grid == g([[0, 0, 0, 0], [8, 2, 0, 0], [8, 0, 0, 0]]) and best.score == 1.0
    assert best.rule == "move colour 2 towards until it touches another colour"


def test_objects_fall_as_rigid_bodies_and_rest_on_those_that_fell_first() -> None:
    falling = [
        (
            g([[1, 1, 0], [0, 0, 0], [0, 3, 0], [0, 0, 0]]),
            g([[0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 3, 0]]),
        ),
        (
            g([[0, 4, 0], [0, 4, 0], [0, 0, 0], [6, 0, 0]]),
            g([[0, 0, 0], [0, 0, 0], [0, 4, 0], [6, 4, 0]]),
        ),
    ]
    best = object_transform_candidates(falling, g([[2, 2, 2], [0, 0, 0], [0, 0, 7], [0, 0, 0]]))[0]
    assert best.grid == g([[0, 0, 0], [0, 0, 0], [2, 2, 2], [0, 0, 7]]) and best.score == 1.0
    assert best.rule.startswith("gravity down")


def test_each_object_of_a_colour_takes_the_colour_of_its_nearest_neighbour_even_one_never_seen() -> None:
    # Grey (5) pixels take the colour of the nearer wall: left or right.
    train = [
        (g([[1, 5, 0, 0, 0, 2], [1, 0, 0, 0, 5, 2]]), g([[1, 1, 0, 0, 0, 2], [1, 0, 0, 0, 2, 2]])),
        (g([[3, 0, 0, 5, 4], [3, 5, 0, 0, 4]]), g([[3, 0, 0, 4, 4], [3, 3, 0, 0, 4]])),
    ]
    best = object_transform_candidates(train, g([[6, 0, 5, 0, 0, 0, 7], [6, 0, 0, 0, 0, 5, 7]]))[0]
    assert best.grid == g([[6, 0, 6, 0, 0, 0, 7], [6, 0, 0, 0, 0, 7, 7]]) and best.score == 1.0
    assert "with the nearest other colour" in best.rule


def test_each_moving_colour_goes_to_its_own_anchor() -> None:
    # 3 moves until it touches 2, and 7 until it touches 1, whichever is nearer.
    train = [
        (g([[3, 0, 0, 2, 0, 0, 1, 0, 7]]), g([[0, 0, 3, 2, 0, 0, 1, 7, 0]])),
        (g([[0, 1, 0, 0, 7, 3, 0, 0, 2]]), g([[0, 1, 7, 0, 0, 0, 0, 3, 2]])),
    ]
    best = object_transform_candidates(train, g([[7, 0, 0, 0, 1], [2, 0, 0, 0, 3]]))[0]
    assert best.grid == g([[0, 0, 0, 7, 1], [2, 3, 0, 0, 0]]) and best.score == 1.0
    assert best.rule == "move each colour until it touches its anchor: 3 towards 2, 7 towards 1"


def test_objects_are_recoloured_by_how_many_holes_they_hold() -> None:
    def stacked(*shapes: tuple[list[list[int]], int]) -> list[list[int]]:
        # The shapes one above the other, each in its colour, two black rows apart, 8 wide.
        rows: list[list[int]] = []
        for shape, colour in shapes:
            rows += [[colour if c else 0 for c in r] + [0] * (8 - len(r)) for r in shape] + [[0] * 8] * 2
        return rows

    one = [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    two = [[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    big_one = [[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1]]
    train = [
        (g(stacked((one, 1), (two, 1))), g(stacked((one, 2), (two, 3)))),
        (g(stacked((big_one, 1), (two, 1))), g(stacked((big_one, 2), (two, 3)))),
    ]
    # A two-hole shape of a size, width and look no pair showed, beside a larger one-hole shape.
    wide = [[1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1, 1]]
    biggest_one = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1]]
    top = object_transform_candidates(train, g(stacked((wide, 1), (biggest_one, 1))))[0]
    assert (top.score, top.rule) == (1.0, "recolour 8-connected one-colour objects by holes")
    assert top.grid == g(stacked((wide, 3), (biggest_one, 2)))


def test_objects_inside_a_frame_take_the_outermost_frames_colour() -> None:
    # A 2 frame holds a 3 frame holding a 4 dot: everything inside takes the outer frame's colour;
    # the lone 5 outside every frame stays.
    def nest(outer: int, middle: int, dot: int) -> list[list[int]]:
        rows = [[outer] * 7] + [[outer] + [0] * 5 + [outer] for _ in range(5)] + [[outer] * 7]
        for c in range(1, 6):
            rows[1][c] = rows[5][c] = middle
        for r in range(1, 6):
            rows[r][1] = rows[r][5] = middle
        rows[3][3] = dot
        return [r + [0, 0] for r in rows] + [[0] * 8 + [5]]

    train = [
        (g(nest(2, 3, 4)), g(nest(2, 2, 2))),
        (g(nest(6, 1, 8)), g(nest(6, 6, 6))),
    ]
    top = object_transform_candidates(train, g(nest(7, 9, 3)))[0]
    assert (top.score, top.rule) == (1.0, "recolour each object inside another with the outermost one's colour")
    assert top.grid == g(nest(7, 7, 7))


def test_each_object_slides_to_the_side_its_colour_calls_for() -> None:
    # 1s slide right, 2s slide down, until the border.
    train = [
        (g([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]), g([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 2, 0]])),
        (g([[0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]), g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 2, 0, 0]])),
    ]
    top = object_transform_candidates(train, g([[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]))[0]
    assert (top.score, top.rule) == (1.0, "slide each object the way its colour says")
    assert top.grid == g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 1]])
    # A colour no pair showed has no direction: no answer by this rule.
    unseen = object_transform_candidates(train, g([[3, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]))
    assert all(not c.rule.startswith("slide each object") for c in unseen)


def test_each_cell_of_a_colour_takes_the_other_colour_its_row_holds() -> None:
    train = [
        (g([[1, 0, 5, 5], [2, 0, 0, 5], [0, 0, 0, 0]]), g([[1, 0, 1, 1], [2, 0, 0, 2], [0, 0, 0, 0]])),
        (g([[3, 5, 0, 0], [0, 0, 0, 0], [4, 0, 5, 0]]), g([[3, 3, 0, 0], [0, 0, 0, 0], [4, 0, 4, 0]])),
    ]
    top = object_transform_candidates(train, g([[6, 0, 5, 0], [7, 5, 5, 0], [0, 0, 0, 0]]))[0]
    assert (top.score, top.rule) == (1.0, "recolour each cell of colour 5 with the other colour its row holds")
    assert top.grid == g([[6, 0, 6, 0], [7, 7, 7, 0], [0, 0, 0, 0]])


def test_a_colour_seen_only_where_it_could_not_move_is_not_guessed_a_direction() -> None:
    # 1s slide right; the 2 always sat in the bottom right corner, where down and right both fit.
    train = [
        (g([[1, 0, 0], [0, 0, 0], [0, 0, 2]]), g([[0, 0, 1], [0, 0, 0], [0, 0, 2]])),
        (g([[0, 0, 0], [1, 0, 0], [0, 0, 2]]), g([[0, 0, 0], [0, 0, 1], [0, 0, 2]])),
    ]
    # A 2 in the corner again stays there; the 1 slides right.
    cornered = object_transform_candidates(train, g([[0, 0, 0], [0, 1, 0], [0, 0, 2]]))
    slid = [c for c in cornered if c.rule == "slide each object the way its colour says"]
    assert [(c.grid, c.score) for c in slid] == [(g([[0, 0, 0], [0, 0, 1], [0, 0, 2]]), 1.0)]
    # A 2 that is free to go down or right: the pairs never said which, so the rule answers nothing.
    free = object_transform_candidates(train, g([[0, 0, 0], [0, 2, 0], [1, 0, 0]]))
    assert all(c.rule != "slide each object the way its colour says" for c in free)


def test_each_colour_moves_by_its_own_offset() -> None:
    # 1s move one step right, 2s two steps, 3s stay; the 2 is absent from the second pair.
    train = [
        (g([[1, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0]]), g([[0, 1, 0, 0], [0, 0, 2, 0], [3, 0, 0, 0]])),
        (g([[0, 0, 0, 0], [1, 0, 0, 3], [0, 0, 0, 0]]), g([[0, 0, 0, 0], [0, 1, 0, 3], [0, 0, 0, 0]])),
    ]
    top = object_transform_candidates(train, g([[2, 0, 0, 0], [1, 0, 0, 0], [3, 0, 0, 0]]))[0]
    assert top.rule == "move each colour by its own offset: 1 by (0, 1), 2 by (0, 2)" and top.score == 1.0
    assert top.grid == g([[0, 0, 2, 0], [0, 1, 0, 0], [3, 0, 0, 0]])


def test_each_objects_two_colours_are_swapped() -> None:
    train = [
        (g([[1, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 3], [0, 0, 0, 4]]), g([[2, 1, 0, 0], [2, 2, 0, 0], [0, 0, 0, 4], [0, 0, 0, 3]])),
        (g([[5, 6, 0], [0, 0, 0], [0, 7, 8]]), g([[6, 5, 0], [0, 0, 0], [0, 8, 7]])),
    ]
    top = object_transform_candidates(train, g([[9, 0, 0], [9, 1, 0], [0, 0, 0]]))[0]
    assert (top.rule, top.score) == ("swap the two colours of each object", 1.0)
    assert top.grid == g([[1, 0, 0], [1, 9, 0], [0, 0, 0]])


def test_each_object_is_mirrored_within_its_own_box() -> None:
    mirrored = [
        (
            g([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 2, 2], [0, 0, 0, 2]]),
            g([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 2, 2], [0, 0, 2, 0]]),
        ),
        (g([[3, 3, 3, 0], [3, 0, 0, 0]]), g([[3, 3, 3, 0], [0, 0, 3, 0]])),
    ]
    best = object_transform_candidates(
        mirrored, g([[0, 0, 0, 0, 0], [0, 4, 4, 0, 0], [0, 4, 0, 0, 0], [0, 0, 0, 0, 0]])
    )[0]
    assert (
        best.grid == g([[0, 0, 0, 0, 0], [0, 4, 4, 0, 0], [0, 0, 4, 0, 0], [0, 0, 0, 0, 0]])
        and best.score == 1.0
    )
    assert best.rule == "flip columns each object"


@pytest.mark.integration
def test_the_object_transform_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_object_transforms", RANKED, TEST)
    assert (g(grid), confidence) == (ANSWER, 1.0)