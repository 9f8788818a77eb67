"""One text step's logic without gRPC: the agreement of samples, the verifier's score, the token cost,
and a generation kept in the per-model cache level coming back whole. Triton is replaced by a
scripted stream of responses in the vLLM backend's layout; everything above it is the real code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import numpy as np
import pytest

from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.triton.client import InferResult
from inferscale.v1 import common_pb2
from services.orchestrator.latency import RecentSteps
from services.orchestrator.model_cache import ModelOutputCache
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.text.contract import Generated, Sampling, Token, absorb
from services.orchestrator.text.prompts import Turn
from services.orchestrator.text_calls import TextCaller, _cached_outputs, sample_seed, token_cost

MODEL = RegisteredModel(
    "llm",
    1,
    True,
    task="math",
    tier=1,
    cost=100.0,
    answer_kind="generated_text",
    confidence_method="agreement",
    output_name="text_output",
    cost_per_input_token=2.0,
    cost_per_output_token=10.0,
    answer_extraction="last_number",
    prompt_format="chatml",
    agreement_samples=3,
)


def _response(text: str, logprob: float, top: dict[str, float] | None = None) -> list[common_pb2.InferTensor]:
    position = {"1": {"logprob": logprob, "rank": 1, "decoded_token": text}}
    position |= {f"t{i}": {"logprob": lp, "rank": i + 2, "decoded_token": t} for i, (t, lp) in enumerate((top or {}).items())}
    return [
        bytes_tensor("text_output", [text]),
        bytes_tensor("logprobs", [json.dumps([position])]),
        bytes_tensor("finish_reason", ["stop"]),
        from_numpy("num_input_tokens", np.array([20], dtype=np.uint32)),
        from_numpy("num_output_tokens", np.array([1], dtype=np.uint32)),
    ]


class ScriptedTriton:
    """Answers each streamed call with the next scripted response, and remembers what it was sent."""

    def __init__(self, answers: Sequence[list[common_pb2.InferTensor]]) -> None:
        self._answers = list(answers)
        self.sampling: list[dict] = []

    async def stream_infer(self, model_name: str, version: int, inputs, *, timeout_seconds: float) -> AsyncIterator[InferResult]:  # type: ignore[no-untyped-def]
        parameters = next(t for t in inputs if t.name == "sampling_parameters")
        self.sampling.append(json.loads(parameters.raw_contents[4:]))
        yield InferResult(self._answers.pop(0), 1)


class NoEvents:
    def emit(self, event: object) -> None:
        pass


def _caller(triton: ScriptedTriton) -> TextCaller:
    cache = ModelOutputCache(None, NoEvents(), timeout_seconds=1.0, min_cost=0.0)  # type: ignore[arg-type]
    return TextCaller(triton, cache, RecentSteps())  # type: ignore[arg-type]


def _answer(caller: TextCaller, model: RegisteredModel, temperature: float = 0.0):  # type: ignore[no-untyped-def]
    return asyncio.run(
        caller.answer(
            model,
            [Turn("user", "6 + 1?")],
            Sampling(max_tokens=8, temperature=temperature),
            request_id="r1",
            position=0,
            nonce=b"execution",
            skip_cache=False,
            timeout_seconds=10.0,
            on_tokens=None,
        )
    )


def test_an_agreement_confidence_is_the_leading_answers_share_of_fresh_samples() -> None:
    triton = ScriptedTriton([_response("7", -0.1), _response("8", -0.2), _response("7", -0.3)])
    answer = _answer(_caller(triton), MODEL)
    assert (answer.label, answer.confidence) == ("7", pytest.approx(2 / 3))
    assert "2 of 3 samples agree" in answer.why
    # The first call decodes as asked (greedy); the extra samples sample, each with its own seed.
    assert "seed" not in triton.sampling[0] and triton.sampling[0]["temperature"] == 0.0
    assert [s["temperature"] for s in triton.sampling[1:]] == [0.7, 0.7]
    assert triton.sampling[1]["seed"] != triton.sampling[2]["seed"]
    # Every sample's tokens count in the step's cost and usage.
    assert answer.cost == pytest.approx(3 * (20 * 2.0 + 1 * 10.0))
    assert (answer.input_tokens, answer.output_tokens) == (60, 3)


def test_a_token_probability_confidence_reads_the_answers_tokens() -> None:
    triton = ScriptedTriton([_response("42", -0.5)])
    answer = _answer(_caller(triton), replace(MODEL, confidence_method="token_probability"))
    assert answer.label == "42" and answer.confidence == pytest.approx(np.exp(-0.5))
    assert len(triton.sampling) == 1


def test_a_text_that_fails_its_answer_check_has_confidence_zero_and_says_why() -> None:
    model = replace(MODEL, confidence_method="token_probability", answer_check="arithmetic")
    answer = _answer(_caller(ScriptedTriton([_response("4+5=10", -0.01)])), model)
    assert answer.label == "10" and answer.confidence == 0.0
    assert answer.slips == ("4+5 = 10",) and "arithmetic slip '4+5 = 10'" in answer.why
    right = _answer(_caller(ScriptedTriton([_response("4+5=9", -0.01)])), model)
    assert right.confidence == pytest.approx(np.exp(-0.01)) and not right.slips


def test_agreement_counts_only_samples_whose_text_holds() -> None:
    # Two samples slip to 10, one derives 9: the vote goes to 9, and its text stands for the answer.
    triton = ScriptedTriton([_response("4+5=10", -0.1), _response("4+5=9", -0.2), _response("4+5=10", -0.3)])
    answer = _answer(_caller(triton), replace(MODEL, answer_check="arithmetic"))
    assert (answer.label, answer.confidence) == ("9", pytest.approx(1 / 3))
    assert answer.generated.text == "4+5=9" and not answer.slips
    # The first sample reached the leader too, but slipped on the way: a text that holds stands for it.
    triton = ScriptedTriton([_response("2+2=5, so 9", -0.1), _response("4+5=9", -0.2), _response("4+5=9", -0.3)])
    answer = _answer(_caller(triton), replace(MODEL, answer_check="arithmetic"))
    assert (answer.label, answer.confidence) == ("9", pytest.approx(2 / 3))
    assert answer.generated.text == "4+5=9" and not answer.slips


def test_the_verifier_scores_by_its_probability_of_yes() -> None:
    triton = ScriptedTriton([_response("Yes", np.log(0.6), {"No": np.log(0.2), "Maybe": np.log(0.2)})])
    verdict = asyncio.run(
        _caller(triton).verify(MODEL, "6 + 1?", "7", request_id="r1", skip_cache=False, timeout_seconds=10.0)
    )
    assert verdict.confidence == pytest.approx(0.75)
    assert triton.sampling == [{"max_tokens": 1, "temperature": 0.0, "logprobs": 10}]


def test_a_generation_kept_in_the_cache_comes_back_whole() -> None:
    generated = Generated()
    absorb(generated, _response("4", -0.25, {"5": -2.0}))
    generated.tokens.append(Token("2", -0.5, {"2": -0.5, "3": -1.5}))
    generated.text += "2"
    generated.output_tokens += 1
    again = Generated()
    absorb(again, _cached_outputs(generated))
    assert again.text == "42"
    assert [(t.text, t.logprob) for t in again.tokens] == [("4", -0.25), ("2", -0.5)]
    assert again.tokens[1].top == {"2": -0.5, "3": -1.5}
    assert (again.input_tokens, again.output_tokens) == (generated.input_tokens, generated.output_tokens)
    assert token_cost(MODEL, again) == token_cost(MODEL, generated)


def test_samples_are_seeded_by_the_execution_and_the_sample() -> None:
    assert sample_seed(b"a", "step 0") == sample_seed(b"a", "step 0")
    assert len({sample_seed(b"a", "step 0"), sample_seed(b"a", "step 1"), sample_seed(b"b", "step 0")}) == 3
