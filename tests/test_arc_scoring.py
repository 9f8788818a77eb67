"""ARC scoring on hand-made tasks with known answers, and task parsing; the shared data read where it lies."""

from __future__ import annotations

import os

import pytest

from inferscale.arc.scoring import oracle_pass_at_k, set_score, solved, task_score
from inferscale.arc.tasks import SHARED_ARC, Pair, Task, load_tasks, parse_task, to_grid

ANSWER = ((1, 2), (3, 4))
TASK = Task("hand", train=(Pair(((0,),), ((1,),)),), test=(Pair(((5, 5), (5, 5)), ANSWER),))
TWO_TESTS = Task("hand2", train=TASK.train, test=(Pair(((0,),), ((7,),)), Pair(((0,),), ANSWER)))


def test_the_right_grid_scores() -> None:
    assert task_score(TASK, [[ANSWER]]) == 1.0


def test_a_grid_of_the_wrong_size_does_not_score_even_if_it_contains_the_answer() -> None:
    bigger = ((1, 2, 0), (3, 4, 0))
    assert task_score(TASK, [[bigger]]) == 0.0
    assert task_score(TASK, [[((1, 2),)]]) == 0.0


def test_one_wrong_cell_does_not_score() -> None:
    assert task_score(TASK, [[((1, 2), (3, 5))]]) == 0.0


def test_two_attempts_of_which_the_second_is_right_score_and_a_third_does_not_count() -> None:
    wrong = ((0, 0), (0, 0))
    assert task_score(TASK, [[wrong, ANSWER]]) == 1.0
    assert task_score(TASK, [[wrong, wrong, ANSWER]]) == 0.0
    assert solved([], ANSWER) is False


def test_a_tasks_score_is_the_fraction_of_its_test_inputs_solved_and_a_sets_the_mean() -> None:
    assert task_score(TWO_TESTS, [[((7,),)], [((0,),)]]) == 0.5
    assert set_score([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert set_score([]) == 0.0
    with pytest.raises(ValueError, match="2 test inputs"):
        task_score(TWO_TESTS, [[ANSWER]])


def test_pass_at_k_with_an_oracle_counts_any_of_k_candidates_and_is_not_the_official_score() -> None:
    wrong = ((0, 0), (0, 0))
    candidates = [[wrong, wrong, ANSWER]]
    assert oracle_pass_at_k(TASK, candidates, k=3) == 1.0
    assert oracle_pass_at_k(TASK, candidates, k=2) == 0.0
    assert task_score(TASK, candidates) == 0.0  # the official score allows two attempts only
    with pytest.raises(ValueError, match="k must be at least 1"):
        oracle_pass_at_k(TASK, candidates, k=0)


@pytest.mark.parametrize(
    ("grid", "fault"),
    [
        ([], "1 to 30 rows"),
        ([[1, 2], [3]], "rows of different lengths"),
        ([[1, 10]], "integers 0-9"),
        ([[1, True]], "integers 0-9"),
        ([[0] * 31], "1 to 30 cells"),
        ("12", "list of 1 to 30 rows"),
    ],
)
def test_malformed_grids_are_refused_naming_the_fault(grid: object, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        to_grid(grid, "g")


def test_a_task_is_parsed_and_its_hidden_test_outputs_stay_hidden() -> None:
    task = parse_task("t", {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]})
    assert task.train == (Pair(((1,),), ((2,),)),) and task.test == (Pair(((3,),), None),)
    with pytest.raises(ValueError, match="no output to score against"):
        task_score(task, [[((3,),)]])
    with pytest.raises(ValueError, match=r"train\[0\]: a training pair needs an 'output'"):
        parse_task("t", {"train": [{"input": [[1]]}], "test": [{"input": [[3]]}]})
    with pytest.raises(ValueError, match="'train' and 'test' lists"):
        parse_task("t", {"train": []})


@pytest.mark.skipif(
    not SHARED_ARC.is_dir() and os.environ.get("CI") != "true",
    reason=f"the ARC data is not at {SHARED_ARC} (CI runs this with ../shared beside the checkout)",
)
@pytest.mark.parametrize(("folder", "count"), [("arc-agi-1/training", 400), ("arc-agi-1/evaluation-dev", 196), ("arc-agi-2/training", 809)])
def test_the_shared_task_folders_parse_and_every_test_input_has_an_answer(folder: str, count: int) -> None:
    tasks = list(load_tasks(SHARED_ARC / folder))
    assert len(tasks) == count
    assert all(pair.output is not None for task in tasks for pair in task.test)
    # A task scored with its own answers scores 1: the data and the scorer agree.
    assert all(task_score(task, [[pair.output] for pair in task.test]) == 1.0 for task in tasks)
