"""Scoring as the ARC Prize scores, and pass@k with oracle selection, kept apart.

Official: for each test input two attempts; an attempt counts only if the whole grid, its size
included, is exactly right; a task's score is the fraction of its test inputs solved; a set's
score is the mean of its tasks' scores.

Pass@k with oracle selection counts a test input as solved when *any* of k candidates is right:
the measure of published multi-model ARC-AGI-2 results, which an oracle (the hidden answer)
picks from. It is reported beside the official score, never mixed into it.
"""

from __future__ import annotations

from collections.abc import Sequence

from inferscale.arc.tasks import Grid, Task

ATTEMPTS = 2


def solved(attempts: Sequence[Grid], answer: Grid) -> bool:
    """Whether one of the first two attempts is the answer exactly, its size included."""
    return any(attempt == answer for attempt in attempts[:ATTEMPTS])


def task_score(task: Task, attempts: Sequence[Sequence[Grid]]) -> float:
    """The official score of a task: the fraction of its test inputs solved within two attempts.

    ``attempts`` holds, per test input in order, the attempts made (more than two are ignored).
    Raises ValueError when the counts differ or a test output is missing.
    """
    if len(attempts) != len(task.test):
        raise ValueError(f"task {task.id}: {len(attempts)} attempt lists for {len(task.test)} test inputs")
    answers = []
    for index, pair in enumerate(task.test):
        if pair.output is None:
            raise ValueError(f"task {task.id}: test[{index}] has no output to score against")
        answers.append(pair.output)
    return sum(solved(tried, answer) for tried, answer in zip(attempts, answers, strict=True)) / len(answers)


def oracle_pass_at_k(task: Task, candidates: Sequence[Sequence[Grid]], k: int) -> float:
    """Pass@k with oracle selection: the fraction of test inputs for which any of the first ``k``
    candidates is right. Not the official score."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if len(candidates) != len(task.test):
        raise ValueError(f"task {task.id}: {len(candidates)} candidate lists for {len(task.test)} test inputs")
    right = sum(any(c == pair.output for c in listed[:k]) for listed, pair in zip(candidates, task.test, strict=True))
    return right / len(task.test)


def set_score(scores: Sequence[float]) -> float:
    """A set's score: the mean of its tasks' scores (0 for no tasks)."""
    return sum(scores) / len(scores) if scores else 0.0
