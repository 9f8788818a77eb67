"""The counting-and-selecting family: outputs sized or painted by counts, histograms, and learned selectors."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc.counting import counting_candidates, counting_rules, task_background
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# As many cells as the input has objects, in their colour.
COUNTED = [
    (g([[0, 3, 0, 0], [0, 0, 0, 3], [3, 0, 0, 0]]), g([[3, 3, 3]])),
    (g([[4, 0, 0], [0, 0, 4], [0, 0, 0], [0, 0, 0]]), g([[4, 4]])),
]
TEST = g([[0, 0, 0, 0, 6], [6, 0, 6, 0, 0], [0, 0, 0, 0, 0], [0, 6, 0, 0, 0]])
ANSWER = g([[6, 6, 6, 6]])


def test_the_output_is_as_long_as_the_input_has_objects() -> None:
    best = counting_candidates(COUNTED, TEST)[0]
    assert best.grid == ANSWER and best.score == 1.0 and "1 x n output" in best.rule


def test_the_colours_are_listed_from_the_most_cells_to_the_fewest() -> None:
    histogram = [
        (g([[1, 1, 1, 0], [2, 0, 0, 0], [0, 3, 3, 0]]), g([[1], [3], [2]])),
        (g([[0, 5, 0, 0], [6, 6, 6, 6], [0, 5, 0, 7]]), g([[6], [5], [7]])),
    ]
    best = counting_candidates(
        histogram, g([[2, 0, 0, 2], [4, 4, 4, 4], [0, 0, 0, 2], [0, 8, 0, 0]])
    )[0]
    assert (
        best.grid == g([[4], [2], [8]])
        and best.rule == "the filled colours as column, most cells first"
    )


def test_a_learned_selector_cuts_out_the_object_it_picks_in_every_pair() -> None:
    largest = [
        (
            g([[1, 1, 0, 0, 0], [1, 1, 0, 2, 0], [0, 0, 0, 0, 0], [0, 3, 3, 3, 0]]),
            g([[1, 1], [1, 1]]),
        ),
        (g([[0, 0, 0, 0], [4, 4, 4, 0], [4, 4, 4, 0], [0, 0, 0, 7]]), g([[4, 4, 4], [4, 4, 4]])),
    ]
    best = counting_candidates(
        largest,
        g([[0, 0, 0, 0, 0], [6, 0, 0, 0, 0], [0, 0, 8, 8, 8], [0, 0, 8, 8, 8], [0, 0, 8, 8, 8]]),
    )[0]
    assert (
        best.grid == g([[8, 8, 8], [8, 8, 8], [8, 8, 8]])
        and best.score == 1.0
        and "whose size is largest" in best.rule
    )


def test_a_fixed_output_takes_the_colour_of_the_object_a_selector_picks() -> None:
    # The largest object's colour: scattered pixels of one colour hold more cells, a lone pixel fewer.
    coloured = [
        (
            g(
                [
                    [1, 1, 0, 2, 0, 2],
                    [1, 1, 0, 0, 0, 0],
                    [0, 0, 0, 2, 0, 2],
                    [2, 0, 0, 0, 0, 0],
                    [0, 0, 2, 0, 0, 7],
                ]
            ),
            g([[1]]),
        ),
        (
            g(
                [
                    [3, 0, 4, 0, 4, 0],
                    [3, 0, 0, 0, 0, 0],
                    [3, 0, 4, 0, 4, 0],
                    [0, 0, 0, 0, 0, 9],
                    [4, 0, 0, 0, 4, 0],
                ]
            ),
            g([[3]]),
        ),
    ]
    test = g(
        [
            [5, 0, 5, 0, 0, 0],
            [0, 0, 0, 0, 6, 0],
            [5, 0, 5, 0, 6, 0],
            [0, 0, 0, 0, 6, 0],
            [5, 0, 5, 0, 0, 8],
        ]
    )
    best = counting_candidates(coloured, test)[0]
    assert (
        best.grid == g([[6]])
        and best.score == 1.0
        and best.rule.startswith("fixed output, every cell in the colour of")
    )


def test_the_background_is_the_one_every_training_input_shares_even_where_a_small_test_holds_more_of_another() -> (
    None
):
    background = task_background([np.array([[0, 0, 1]]), np.array([[2, 0, 0]])])
    assert background(np.array([[4, 4, 0]])) == 0


def test_same_size_tasks_are_left_to_other_families() -> None:
    assert list(counting_rules([(g([[1, 0]]), g([[0, 1]]))])) == []


@pytest.mark.integration
def test_the_counting_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_counting", COUNTED, TEST)
    assert (g(grid), confidence) == (ANSWER, 1.0)