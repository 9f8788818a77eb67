"""ARC solvers and grid answers, pure: candidates scored on the training pairs, answers read as labels."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc.solvers import geometric_candidates, learn_colours, score
from services.orchestrator.escalation import read_grids

# Rotate by 180 degrees, then 1 -> 5: the rule behind both pairs.
TRAIN = [
    (((1, 2), (3, 4)), ((4, 3), (2, 5))),
    (((1, 0, 0), (0, 0, 2)), ((2, 0, 0), (0, 0, 5))),
]


def test_the_geometric_solver_finds_the_symmetry_and_the_colours_and_scores_them_one() -> None:
    best, *others = geometric_candidates(TRAIN, ((1, 1), (0, 3)))
    assert best.grid == ((3, 0), (5, 5)) and best.score == 1.0 and best.rule == "rotate 180 + colours"
    assert all(c.score < 1.0 for c in others)
    assert len({c.grid for c in others}) == len(others) and best.grid not in {c.grid for c in others}
    assert [c.score for c in others] == sorted((c.score for c in others), reverse=True)


def test_a_rule_that_gets_the_output_size_wrong_scores_zero_on_that_pair() -> None:
    assert score([np.zeros((2, 3))], [np.zeros((3, 2))]) == 0.0
    assert score([np.array([[1, 2]]), np.zeros((1, 1))], [np.array([[1, 3]]), np.ones((2, 2))]) == pytest.approx(0.25)


def test_colours_are_learned_by_majority_and_unseen_ones_stay() -> None:
    pairs = [(np.array([[1, 1, 2]]), np.array([[5, 5, 2]])), (np.array([[1]]), np.array([[4]]))]
    assert learn_colours(pairs) == {1: 5, 2: 2}


def test_grid_answers_read_as_compact_json_the_first_the_answer_the_others_its_alternatives() -> None:
    answer = read_grids([b"[[1, 2],\n [3, 4]]", b"[[0]]", b"[[1,2],[3,4]]"], np.array([0.75, 0.5, 0.25], np.float32))
    # The repeated grid is dropped: alternatives are distinct from the answer and each other.
    assert (answer.label, answer.confidence, answer.alternatives) == ("[[1,2],[3,4]]", 0.75, (("[[0]]", 0.5),))
    with pytest.raises(ValueError, match="not a grid"):
        read_grids([b"[[1, 2], [3]]"], np.array([1.0]))
    with pytest.raises(ValueError, match="not a grid"):
        read_grids([b"\xff"], np.array([1.0]))
    with pytest.raises(ValueError, match=r"one number in \[0, 1\] per answer grid"):
        read_grids([b"[[1]]"], np.array([1.5]))
    with pytest.raises(ValueError, match="per answer grid"):
        read_grids([b"[[1]]", b"[[2]]"], np.array([1.0]))
