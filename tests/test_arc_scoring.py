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


def test_the_harness_sends_no_answer_attempts_answer_then_the_first_alternative_and_counts_every_call() -> None:
    import json

    from benchmarks.arc import outcome_of, request_for
    from inferscale.v1 import common_pb2, router_service_pb2

    sent = json.loads(request_for(TWO_TESTS, 1))
    assert sent["test"] == [{"input": [[0]]}]  # the one test input, without its output
    assert sent["train"] == [{"input": [[0]], "output": [[1]]}]

    def answer(grid: str, confidence: float) -> common_pb2.Answer:
        return common_pb2.Answer(label=grid, confidence=confidence)

    response = router_service_pb2.InferResponse(
        answer=answer("[[1]]", 0.9),
        alternatives=[answer("[[2]]", 0.8), answer("[[3]]", 0.7)],
        plan=common_pb2.Plan(steps=[common_pb2.PlanStep(cost=1.0), common_pb2.PlanStep(cost=100.0), common_pb2.PlanStep(cost=5.0)]),
        steps=[
            common_pb2.EscalationStep(index=0, decision=common_pb2.DECISION_ESCALATE, answer=answer("[[4]]", 0.5)),
            common_pb2.EscalationStep(
                index=1, decision=common_pb2.DECISION_ACCEPT, answer=answer("[[1]]", 0.9), alternatives=[answer("[[5]]", 0.1)]
            ),
            common_pb2.EscalationStep(index=2, decision=common_pb2.DECISION_STOPPED),
        ],
    )
    outcome = outcome_of(response)
    assert outcome.attempts == [((1,),), ((2,),)]  # two attempts: the third alternative is not one
    assert outcome.candidates == [((1,),), ((2,),), ((3,),), ((4,),), ((5,),)]  # for oracle pass@k only
    assert outcome.compute == 101.0  # the steps that ran, at their plan costs; a stopped step costs nothing
