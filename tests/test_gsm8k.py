"""GSM8K reading, reference answers, scoring and the few-shot prompt (inferscale/gsm8k.py), without gRPC."""

from __future__ import annotations

import json
import pathlib

import pytest

from inferscale import gsm8k
from inferscale.gsm8k import (
    EXAMPLE_POOL,
    Problem,
    few_shot_context,
    read_problems,
    reference_answer,
    same_number,
    short_examples_context,
    worked_solution,
)
from inferscale.request_inputs import text_prompt
from services.orchestrator.text.bounds import validate_text

NATALIA = Problem(
    question="Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    solution="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
)
WENG = Problem(
    question="Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    solution="Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
)


def write_lines(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_reference_is_the_number_after_the_last_mark() -> None:
    assert NATALIA.reference == "72"
    assert reference_answer("1 + 1 = 2\n#### 1,000") == "1,000"
    with pytest.raises(ValueError, match="no final answer after '####'"):
        reference_answer("The answer is 5.")


@pytest.mark.parametrize(
    ("answer", "reference", "same"),
    [
        ("72", "72", True),
        ("72.0", "72", True),
        ("1000", "1,000", True),
        ("$18", "18", True),
        ("18.", "18", True),
        ("-3", "3", False),
        ("0.5", "1/2", False),
        ("", "0", False),
        ("NaN", "NaN", False),
    ],
)
def test_answers_are_compared_as_numbers(answer: str, reference: str, same: bool) -> None:
    assert same_number(answer, reference) is same


def test_problems_are_read_up_to_the_limit_and_no_further(tmp_path: pathlib.Path) -> None:
    path = write_lines(
        tmp_path / "problems.jsonl",
        [json.dumps({"question": p.question, "answer": p.solution}) for p in (NATALIA, WENG)] + ["not json"],
    )
    # The malformed third line lies past the limit: it is never read.
    assert read_problems(path, 2) == [NATALIA, WENG]
    with pytest.raises(ValueError, match=r"problems.jsonl line 3: not a GSM8K problem"):
        read_problems(path)


@pytest.mark.parametrize(
    "line",
    [json.dumps({"question": "q"}), json.dumps({"question": "q", "answer": "no mark"}), "[1, 2]"],
    ids=["no_answer", "no_mark", "not_an_object"],
)
def test_a_malformed_problem_is_refused_naming_its_line(tmp_path: pathlib.Path, line: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps({"question": "q", "answer": "#### 1"}), line])
    with pytest.raises(ValueError, match="bad.jsonl line 2: not a GSM8K problem"):
        read_problems(path)


def test_worked_solutions_lose_their_calculator_annotations() -> None:
    assert worked_solution(NATALIA.solution) == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"
    )


def test_the_few_shot_context_is_the_instruction_then_each_example_asked_and_answered() -> None:
    turns = few_shot_context([NATALIA, WENG])
    assert [turn.role for turn in turns] == ["system", "user", "assistant", "user", "assistant"]
    assert "####" in turns[0].content
    assert [turn.content for turn in turns[1::2]] == [NATALIA.question, WENG.question]
    assert turns[2].content.endswith("#### 72") and turns[4].content.endswith("#### 10")
    assert not any("<<" in turn.content for turn in turns)


def test_the_examples_are_the_shortest_solutions_among_the_first_of_train(tmp_path: pathlib.Path) -> None:
    def line(index: int, steps: int) -> str:
        return json.dumps({"question": f"Question {index}?", "answer": "Step.\n" * steps + f"#### {index}"})

    # Long solutions, two short ones inside the pool, and a shorter one just past it.
    lengths = {index: 9 for index in range(EXAMPLE_POOL)} | {7: 2, 40: 1, EXAMPLE_POOL: 0}
    train = write_lines(tmp_path / "train.jsonl", [line(index, lengths[index]) for index in range(EXAMPLE_POOL + 1)])
    turns = short_examples_context(train, 2)
    assert [turn.content for turn in turns[1::2]] == ["Question 40?", "Question 7?"]
    assert len(short_examples_context(train)) == 1 + 2 * gsm8k.DEFAULT_SHOTS


@pytest.mark.skipif(not gsm8k.SHARED_GSM8K.is_dir(), reason=f"no GSM8K data at {gsm8k.SHARED_GSM8K}")
def test_the_shared_data_gives_a_prompt_within_the_routers_bounds() -> None:
    context = short_examples_context(gsm8k.SHARED_GSM8K / gsm8k.TRAIN_FILE)
    problems = read_problems(gsm8k.SHARED_GSM8K / gsm8k.TEST_DEV_FILE, 20)
    assert len(context) == 1 + 2 * gsm8k.DEFAULT_SHOTS and len(problems) == 20
    assert all(same_number(p.reference, p.reference) for p in problems)
    for problem in problems:
        validate_text(text_prompt(problem.question, context, max_tokens=200))
