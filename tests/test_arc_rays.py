"""The ray family: lines drawn from sources in learned directions, to the border, a wall or a partner."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc.rays import NOTHING, nearest, ray_candidates, ray_rules
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# Every pixel casts a ray down to the border, in its own colour.
DOWN = [
    (
        g([[0, 0, 0], [0, 3, 0], [0, 0, 0], [0, 0, 0]]),
        g([[0, 0, 0], [0, 3, 0], [0, 3, 0], [0, 3, 0]]),
    ),
    (g([[4, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]]), g([[4, 0, 0, 0], [4, 0, 0, 0], [4, 0, 0, 5]])),
]
TEST = g([[0, 6, 0, 0], [0, 0, 0, 0], [0, 0, 7, 0], [0, 0, 0, 0]])
ANSWER = g([[0, 6, 0, 0], [0, 6, 0, 0], [0, 6, 7, 0], [0, 6, 7, 0]])


def test_rays_learn_their_direction_and_take_their_source_colour_even_one_never_seen() -> None:
    best = ray_candidates(DOWN, TEST)[0]
    assert best.grid == ANSWER and best.score == 1.0 and "down to border" in best.rule


def test_a_line_joins_two_cells_of_the_same_colour_and_leaves_a_cell_without_a_partner() -> None:
    joined = [
        (
            g([[2, 0, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]]),
            g([[2, 2, 2, 2], [0, 0, 0, 0], [3, 0, 0, 0]]),
        ),
        (
            g([[0, 0, 0, 0, 0], [4, 0, 0, 0, 4], [1, 0, 0, 0, 0]]),
            g([[0, 0, 0, 0, 0], [4, 4, 4, 4, 4], [1, 0, 0, 0, 0]]),
        ),
    ]
    best = ray_candidates(joined, g([[5, 0, 5, 0, 0], [0, 0, 0, 0, 0], [6, 0, 0, 0, 6]]))[0]
    assert best.grid == g([[5, 5, 5, 0, 0], [0, 0, 0, 0, 0], [6, 6, 6, 6, 6]]) and best.score == 1.0
    assert "to same colour" in best.rule


def test_a_pair_left_as_it_was_teaches_that_nothing_lands_there_without_hiding_the_rule() -> None:
    # The second pair has no two cells of one colour in a row: its output is its input.
    joined = [
        (g([[2, 0, 0, 2], [0, 0, 0, 0]]), g([[2, 2, 2, 2], [0, 0, 0, 0]])),
        (g([[4, 0, 0], [0, 0, 1]]), g([[4, 0, 0], [0, 0, 1]])),
    ]
    best = ray_candidates(joined, g([[0, 0, 0], [6, 0, 6]]))[0]
    assert best.grid == g([[0, 0, 0], [6, 6, 6]]) and best.score == 1.0 and "to same colour" in best.rule


def test_a_ray_stops_at_the_first_wall_it_meets_and_only_rays_that_meet_one_are_drawn() -> None:
    walled = [
        (g([[1, 0, 0, 8]]), g([[1, 1, 1, 8]])),
        (g([[0, 2, 0, 0, 8], [0, 0, 0, 0, 0]]), g([[0, 2, 2, 2, 8], [0, 0, 0, 0, 0]])),
    ]
    best = ray_candidates(walled, g([[3, 0, 9, 0, 0], [0, 0, 0, 0, 0]]))[0]
    assert best.grid == g([[3, 3, 9, 0, 0], [0, 0, 0, 0, 0]]) and best.score == 1.0
    assert best.rule.endswith("right to other colour")


def test_each_colour_draws_its_own_rays_and_their_crossings_take_a_learned_colour() -> None:
    # 1s draw whole rows, 2s whole columns; where a row meets a column the output shows 4.
    train = [
        (g([[0, 0, 0], [0, 0, 1], [0, 0, 0], [2, 0, 0]]), g([[2, 0, 0], [4, 1, 1], [2, 0, 0], [2, 0, 0]])),
        (g([[0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]), g([[0, 2, 0, 0], [0, 2, 0, 0], [1, 4, 1, 1]])),
    ]
    top = ray_candidates(train, g([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 2, 0], [0, 0, 0, 0]]))[0]
    assert top.score == 1.0 and top.rule.startswith("rays from each colour") and top.rule.endswith("crossings 4")
    assert top.grid == g([[0, 0, 2, 0], [1, 1, 4, 1], [0, 0, 2, 0], [0, 0, 2, 0]])


def test_an_elbow_path_joins_the_single_cells_of_two_colours() -> None:
    # From the 2 along its row to the 3's column, then along that column to the 3, in 8.
    train = [
        (g([[2, 0, 0], [0, 0, 0], [0, 0, 3]]), g([[2, 8, 8], [0, 0, 8], [0, 0, 3]])),
        (g([[0, 0, 0, 3], [0, 0, 0, 0], [0, 2, 0, 0]]), g([[0, 0, 0, 3], [0, 0, 0, 8], [0, 2, 8, 8]])),
    ]
    top = ray_candidates(train, g([[0, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0], [3, 0, 0, 0]]))[0]
    assert (top.score, top.rule) == (1.0, "a path from the 2 to the 3, along the row first, in 8")
    assert top.grid == g([[0, 0, 0, 0], [8, 8, 8, 2], [8, 0, 0, 0], [3, 0, 0, 0]])


def test_every_all_black_row_and_column_is_drawn_in_one_colour() -> None:
    # Noise outnumbers black; the rows and columns that hold only black become 2.
    train = [
        (g([[1, 0, 1], [0, 0, 0], [1, 0, 1]]), g([[1, 2, 1], [2, 2, 2], [1, 2, 1]])),
        (g([[3, 3, 0, 3], [3, 3, 0, 3]]), g([[3, 3, 2, 3], [3, 3, 2, 3]])),
    ]
    top = ray_candidates(train, g([[4, 0, 4], [0, 0, 0], [4, 0, 4], [4, 0, 4]]))[0]
    assert (top.score, top.rule) == (1.0, "every empty row and column in 2")
    assert top.grid == g([[4, 2, 4], [2, 2, 2], [4, 2, 4], [4, 2, 4]])


def test_the_nearest_cell_is_found_along_rows_columns_and_both_diagonals() -> None:
    places = np.full((3, 3), NOTHING)
    places[0, 0] = 7
    assert nearest(places, (-1, -1))[2, 2] == 7 and nearest(places, (-1, -1))[1, 2] == NOTHING
    assert nearest(places, (0, -1))[0, 2] == 7 and nearest(places, (-1, 0))[2, 0] == 7
    assert nearest(places, (1, 1))[0, 0] == NOTHING


def test_tasks_that_change_size_or_nothing_have_no_rays() -> None:
    assert ray_rules([(g([[1]]), g([[1, 1]]))]) == []
    assert ray_rules([(g([[1, 0]]), g([[1, 0]]))]) == []


@pytest.mark.integration
def test_the_ray_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_rays", DOWN, TEST)
    assert (g(grid), confidence) == (ANSWER, 1.0)