"""The neighbourhood family: per-cell tables learned from 3x3 neighbourhoods, used only when consistent and covering."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc.neighbourhood import (
    FEATURES,
    features,
    held_out_reproduced,
    neighbourhood_candidates,
    neighbourhood_rules,
    table_rule,
)
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# Filled cells whose four neighbours are all filled become 2: the inside of each block.
INSIDE = [
    (
        g([[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]),
        g([[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 2, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]),
    ),
    (
        g([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]),
        g([[1, 1, 1, 1, 0, 0], [1, 2, 2, 1, 0, 0], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]),
    ),
]
TEST = g(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
)
ANSWER = g(
    [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 2, 2, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
)


def test_a_table_over_the_neighbourhood_reproduces_every_pair_and_answers_a_larger_block() -> None:
    best = neighbourhood_candidates(INSIDE, TEST)[0]
    assert best.grid == ANSWER and best.score == 1.0 and best.rule.startswith("each cell by its ")


def test_a_table_answers_nothing_for_a_grid_that_shows_a_value_it_never_saw() -> None:
    # Colour 1 becomes 2; colour 3 was never seen, so nothing says what it becomes.
    rule = table_rule((FEATURES.index("colour"),), np.array([0, 1]), np.array([0, 2]))
    assert rule(np.array([[0, 1]], dtype=np.int8)).tolist() == [[0, 2]]
    assert rule(np.array([[0, 3]], dtype=np.int8)) is None


def test_pairs_whose_cells_change_with_no_neighbourhood_to_tell_them_apart_give_no_rule() -> None:
    # The same lone cell becomes 2 in one pair and 3 in the other: no table is consistent.
    clash = [
        (g([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), g([[0, 0, 0], [0, 2, 0], [0, 0, 0]])),
        (g([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), g([[0, 0, 0], [0, 3, 0], [0, 0, 0]])),
    ]
    assert neighbourhood_rules(clash, g([[0, 1], [0, 0]])) == []
    # Nor does a task whose grids change size.
    assert neighbourhood_rules([(g([[1]]), g([[1, 1]]))], g([[1]])) == []


def test_a_feature_set_that_generalises_predicts_each_pair_from_the_others_and_one_that_memorises_does_not() -> (
    None
):
    per_pair = [
        np.unique(
            np.column_stack([features(np.array(i, dtype=np.int8)), np.array(o).ravel()]), axis=0
        )
        for i, o in INSIDE
    ]
    around = (FEATURES.index("colour"), FEATURES.index("filled 4-neighbours"))
    assert held_out_reproduced(around, per_pair) == 2
    # Places name cells by where they are, not by what surrounds them.
    place = (FEATURES.index("row parity"), FEATURES.index("column mod 3"))
    assert held_out_reproduced(place, per_pair) == 0


@pytest.mark.integration
def test_the_neighbourhood_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_neighbourhood", INSIDE, TEST)
    assert (g(grid), confidence) == (ANSWER, 1.0)