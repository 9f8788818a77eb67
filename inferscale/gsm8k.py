"""GSM8K for the text cascade: reading problems, their reference answers, and a few-shot prompt built from train.

The data (openai/grade-school-math, MIT) lies in ``../shared/gsm8k`` beside the project and is
read there, never copied in: JSON lines of ``{"question": ..., "answer": ...}``, the answer a
worked solution whose last line is ``#### <number>``. Scoring follows the usual convention:
the final numbers compared as numbers, commas, a leading ``$`` and a trailing period stripped.
Pure: no gRPC; the demo and the benchmark build their requests from it.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from inferscale.request_inputs import chat_context
from inferscale.v1 import common_pb2

# Where the shared data lies beside a checkout of the project.
SHARED_GSM8K = pathlib.Path(__file__).resolve().parents[2] / "shared" / "gsm8k"
TRAIN_FILE = "train.jsonl"
TEST_DEV_FILE = "test-dev.jsonl"
# What ends a worked solution and comes before its final number.
ANSWER_MARK = "####"
# The instruction before the few-shot turns: reason briefly, then the number after the mark, as
# the train solutions end, so that the last number of the text is the answer.
SYSTEM_PROMPT = (
    "Solve the grade-school math problem. Reason step by step in a few short lines, "
    f"then give the final answer as a number on a last line of its own, after \"{ANSWER_MARK} \"."
)
# The few-shot examples: the shortest worked solutions among the first EXAMPLE_POOL train
# problems, so that the model imitates short derivations (fewer tokens to generate). Four of them
# is what the models' thresholds were learned with (benchmarks/gsm8k.py --calibrate).
EXAMPLE_POOL = 100
DEFAULT_SHOTS = 4
# A calculator annotation of a train solution, "<<48/2=24>>": noise to a model that imitates it.
_CALCULATOR = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class Problem:
    """One GSM8K problem: the question and its worked solution, which ends in ``#### <number>``."""

    question: str
    solution: str

    @property
    def reference(self) -> str:
        """The reference answer: the number after the solution's last ``####``."""
        return reference_answer(self.solution)


def reference_answer(solution: str) -> str:
    """The number after the last ``####`` of a solution, as written ("1,000" stays "1,000")."""
    _, mark, answer = solution.rpartition(ANSWER_MARK)
    if not mark or not answer.strip():
        raise ValueError(f"the solution has no final answer after {ANSWER_MARK!r}")
    return answer.strip()


def read_problems(path: pathlib.Path, limit: int | None = None) -> list[Problem]:
    """The first ``limit`` problems of a GSM8K JSON-lines file (all without a limit); lines past
    the limit are not read. Raises ValueError naming the line of a malformed problem."""
    problems = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(itertools.islice(lines, limit), start=1):
            try:
                record = json.loads(line)
                problem = Problem(question=str(record["question"]), solution=str(record["answer"]))
                reference_answer(problem.solution)
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path} line {number}: not a GSM8K problem ({error})") from None
            problems.append(problem)
    return problems


def worked_solution(solution: str) -> str:
    """A train solution as a model should write one: without the calculator annotations."""
    return _CALCULATOR.sub("", solution).strip()


def few_shot_context(examples: Sequence[Problem]) -> list[common_pb2.ChatMessage]:
    """The turns before a question: the instruction, then each example's question and worked
    solution (from train, never from the problems being scored)."""
    return chat_context(SYSTEM_PROMPT, [(problem.question, worked_solution(problem.solution)) for problem in examples])


def short_examples_context(train: pathlib.Path, shots: int = DEFAULT_SHOTS) -> list[common_pb2.ChatMessage]:
    """The few-shot turns of the benchmark and the demo: the instruction, then the ``shots``
    shortest worked solutions among the first EXAMPLE_POOL problems of ``train``."""
    pool = read_problems(train, EXAMPLE_POOL)
    return few_shot_context(sorted(pool, key=lambda problem: len(problem.solution))[:shots])


def _number(text: str) -> Decimal | None:
    cleaned = text.strip().removeprefix("$").rstrip(".").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def same_number(answer: str, reference: str) -> bool:
    """Whether an extracted answer is the reference, compared as numbers ("18.0" is "18", "$1,000" is "1000")."""
    given, expected = _number(answer), _number(reference)
    return given is not None and given == expected
