"""What `inferscale infer` sends and shows, without a suite: inputs from files and prompts
(inferscale/request_inputs.py), the request its options build, and the live view of a stream
(inferscale/stream_view.py)."""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pytest

from inferscale import cli, request_inputs
from inferscale.cli_infer import build_request, verdict
from inferscale.cli_support import CliError
from inferscale.limits import MAX_INPUT_TENSORS
from inferscale.request_inputs import (
    arc_task_tensor,
    chat_context,
    grid_matches,
    npy_tensor,
    read_arc_task,
    text_prompt,
    text_tensor,
)
from inferscale.stream_view import StreamView
from inferscale.tensors import bytes_elements, to_numpy
from inferscale.v1 import common_pb2, router_service_pb2

ARC_TASK = {
    "train": [{"input": [[1, 0], [0, 0]], "output": [[0, 1], [0, 0]]}],
    "test": [{"input": [[0, 0], [1, 0]], "output": [[0, 0], [0, 1]]}],
}


def parsed(*argv: str):  # type: ignore[no-untyped-def]
    return cli.build_parser().parse_args(["infer", *argv])


def test_a_npy_file_is_sent_as_it_is_under_its_stem_or_the_name_given(tmp_path: pathlib.Path) -> None:
    array = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.save(tmp_path / "IMAGE.npy", array)
    by_stem = npy_tensor(str(tmp_path / "IMAGE.npy"))
    named = npy_tensor(f"{tmp_path / 'IMAGE.npy'}:SEED")
    assert (by_stem.name, named.name) == ("IMAGE", "SEED")
    assert (by_stem.datatype, list(by_stem.shape)) == ("INT64", [2, 3])
    np.testing.assert_array_equal(to_numpy(by_stem), array)


def test_a_big_endian_npy_file_is_sent_little_endian(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "x.npy", np.array([1.5, -2.0], dtype=">f4"))
    tensor = npy_tensor(str(tmp_path / "x.npy"))
    assert tensor.datatype == "FP32" and tensor.raw_contents == np.array([1.5, -2.0], dtype="<f4").tobytes()


def test_a_file_larger_than_a_tensor_is_refused_unread(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "big.npy", np.zeros(64, np.float32))
    monkeypatch.setattr(request_inputs, "MAX_TENSOR_BYTES", 100)

    def never_read(path: pathlib.Path) -> bytes:
        raise AssertionError(f"{path} was read")

    monkeypatch.setattr(pathlib.Path, "read_bytes", never_read)
    with pytest.raises(ValueError, match=r"big.npy has \d+ bytes, more than the 100 a tensor may carry"):
        npy_tensor(str(tmp_path / "big.npy"))


@pytest.mark.parametrize(
    ("contents", "message"),
    [(b"not an array", "--npy .*bad.npy: "), (None, "--npy .*bad.npy: No such file")],
    ids=["not_npy", "missing"],
)
def test_a_bad_npy_file_is_refused_naming_it(tmp_path: pathlib.Path, contents: bytes | None, message: str) -> None:
    if contents is not None:
        (tmp_path / "bad.npy").write_bytes(contents)
    with pytest.raises(ValueError, match=message):
        npy_tensor(str(tmp_path / "bad.npy"))


def test_an_arc_task_file_sends_its_training_pairs_and_one_test_input_never_its_answer(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "flip.json"
    path.write_text(json.dumps(ARC_TASK))
    task = read_arc_task(str(path))
    tensor = arc_task_tensor(task)
    assert tensor.name == "TASK" and tensor.datatype == "BYTES"
    sent = json.loads(bytes_elements(tensor, "TASK")[0])
    assert sent == {"train": ARC_TASK["train"], "test": [{"input": ARC_TASK["test"][0]["input"]}]}
    with pytest.raises(ValueError, match="task flip has 1 test inputs: pick 0..0"):
        arc_task_tensor(task, 1)
    path.write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(ValueError, match="--arc-task .*flip.json: task flip: 'train' and 'test' must not be empty"):
        read_arc_task(str(path))


def test_grid_answers_are_compared_as_grids() -> None:
    grid = ((0, 0), (0, 1))
    assert grid_matches("[[0, 0], [0, 1]]", grid) and grid_matches("[[0,0],[0,1]]", grid)
    assert not grid_matches("[[0, 0], [1, 0]]", grid) and not grid_matches("7", grid)
    second = router_service_pb2.InferResponse(
        answer=common_pb2.Answer(label="[[1]]"), alternatives=[common_pb2.Answer(label="[[0, 0], [0, 1]]")]
    )
    assert verdict(second, grid) == "the task file's test output: right at attempt 2"
    assert verdict(router_service_pb2.InferResponse(answer=common_pb2.Answer(label="7")), "7") == "truth 7: right"


def test_a_prompt_carries_its_turns_and_leaves_unset_sampling_to_the_router() -> None:
    context = chat_context("Be brief.", [("2 + 2?", "4")])
    assert [(t.role, t.content) for t in context] == [("system", "Be brief."), ("user", "2 + 2?"), ("assistant", "4")]
    assert chat_context(None, []) == []
    unset = text_prompt("3 + 3?")
    assert unset.sampling.max_tokens == 0 and not unset.sampling.HasField("temperature")
    greedy = text_prompt("3 + 3?", context, max_tokens=20, temperature=0.0)
    assert greedy.sampling.HasField("temperature") and greedy.sampling.temperature == 0.0
    assert list(greedy.context) == context and greedy.sampling.max_tokens == 20


def test_the_options_build_a_text_request_for_the_math_task() -> None:
    request, truth = build_request(
        parsed(
            "--prompt", "What is 6 * 7?", "--system", "Answer with a number.", "--example", "1 + 1?", "2",
            "--max-tokens", "16", "--temperature", "0.5", "--strategy", "self_consistency", "--max-calls", "5",
        )
    )
    assert truth is None and request.task == "math" and not request.inputs
    assert request.strategy == common_pb2.STRATEGY_SELF_CONSISTENCY and request.max_calls == 5
    assert request.text.prompt == "What is 6 * 7?"
    assert [t.role for t in request.text.context] == ["system", "user", "assistant"]
    assert (request.text.sampling.max_tokens, request.text.sampling.temperature) == (16, 0.5)


def test_each_input_goes_to_its_task_unless_one_is_named() -> None:
    request, _ = build_request(parsed("--text", "turn on the lights"))
    assert request.task == "intents" and request.inputs[0] == text_tensor("turn on the lights")
    request, _ = build_request(parsed("--text", "hello", "--task", "greetings", "--text-input", "UTTERANCE"))
    assert request.task == "greetings" and request.inputs[0].name == "UTTERANCE"
    request, truth = build_request(parsed("--digit", "3"))
    assert request.task == "digits" and truth is not None and not request.HasField("text")


def test_more_tensors_than_a_request_carries_are_refused_before_any_file_is_read() -> None:
    files = [arg for n in range(MAX_INPUT_TENSORS + 1) for arg in ("--npy", f"/nonexistent/{n}.npy")]
    with pytest.raises(CliError, match=f"--npy given {MAX_INPUT_TENSORS + 1} times: a request carries at most {MAX_INPUT_TENSORS}"):
        build_request(parsed(*files))


def test_prompt_options_without_a_prompt_are_refused() -> None:
    with pytest.raises(CliError, match="--system, --max-tokens go with --prompt"):
        build_request(parsed("--text", "hi", "--system", "x", "--max-tokens", "3"))


def events(*items: router_service_pb2.InferStreamResponse) -> list[router_service_pb2.InferStreamResponse]:
    return list(items)


def started(position: int, model: str, tier: int) -> router_service_pb2.InferStreamResponse:
    return router_service_pb2.InferStreamResponse(
        step_started=common_pb2.StepStarted(index=position, position=position, model=common_pb2.ModelRef(name=model, version=1), tier=tier)
    )


def tokens(position: int, *texts: str) -> router_service_pb2.InferStreamResponse:
    return router_service_pb2.InferStreamResponse(
        tokens=common_pb2.TokenDelta(position=position, tokens=[common_pb2.GeneratedToken(text=t) for t in texts])
    )


def finished(
    model: str, decision: int, label: str, reason: str, latency_ms: float = 120.4
) -> router_service_pb2.InferStreamResponse:
    return router_service_pb2.InferStreamResponse(
        step_finished=common_pb2.EscalationStep(
            model=common_pb2.ModelRef(name=model, version=1),
            decision=decision,
            reason=reason,
            answer=common_pb2.Answer(label=label, confidence=0.5),
            usage=common_pb2.TokenUsage(input_tokens=30, output_tokens=3),
            latency_ms=latency_ms,
            cost=390,
        )
    )


class FlushCounting(io.StringIO):
    """A text stream that records what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_the_stream_view_shows_each_step_its_tokens_as_they_come_and_its_decision() -> None:
    out = FlushCounting()
    view = StreamView(out)
    response = router_service_pb2.InferResponse(answer=common_pb2.Answer(label="9"))
    for event in (
        started(0, "small", 1),
        tokens(0, "4 + 5", " = 8"),
        tokens(0, "\n#### 8"),
        finished("small", common_pb2.DECISION_ESCALATE, "8", "confidence 0.50 < threshold 0.90"),
        started(1, "large", 2),
        tokens(1, "#### 9"),
        finished("large", common_pb2.DECISION_ACCEPT, "9", "", latency_ms=2512.0),
        router_service_pb2.InferStreamResponse(response=response),
    ):
        view.show(event)
    assert out.getvalue() == (
        "  small v1 (tier 1) starts\n"
        "    4 + 5 = 8\n"
        "    #### 8\n"
        "  small escalate (confidence 0.50 < threshold 0.90): answer 8, 30 tokens in, 3 out, 120 ms, cost 390\n"
        "  large v1 (tier 2) starts\n"
        "    #### 9\n"
        "  large accept: answer 9, confidence 0.500, 30 tokens in, 3 out, 2.5 s, cost 390\n"
    )
    # Every event is flushed as it is written: the first tokens are out before the second delta.
    assert out.flushed[1].endswith("4 + 5 = 8")
    assert view.response == response and view.tokens_shown == 4


def test_the_stream_view_labels_the_tokens_of_steps_that_generate_at_once() -> None:
    out = io.StringIO()
    view = StreamView(out)
    for event in (started(0, "a", 1), started(1, "b", 2), tokens(0, "one"), tokens(1, "two"), tokens(0, " more")):
        view.show(event)
    assert out.getvalue().splitlines()[2:] == ["    one", "    [b]", "    two", "    [a]", "     more"]
