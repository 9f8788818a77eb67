"""The request and responses of Triton's vLLM-backend contract, as the orchestrator speaks it.

Every text call streams (``stream`` true, prompt excluded from the output) and asks for every
additional output: the finish reason, the token log-probabilities (``logprobs`` in the sampling
parameters, so that the vLLM backend computes them), and the token counts its cost is made of.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inferscale.models.llm import SWITCHES
from inferscale.tensors import bytes_elements, bytes_tensor, from_numpy, to_numpy
from inferscale.v1 import common_pb2


@dataclass(frozen=True)
class Sampling:
    """What one generation is asked for."""

    max_tokens: int
    temperature: float
    # None for greedy decoding, where a seed changes nothing.
    seed: int | None = None
    # How many most likely tokens to report at each position besides the sampled one.
    top_logprobs: int = 0


def request_tensors(text_input: str, sampling: Sampling) -> list[common_pb2.InferTensor]:
    """The inputs of one streamed generation."""
    parameters: dict[str, object] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "logprobs": sampling.top_logprobs,
    }
    if sampling.seed is not None:
        parameters["seed"] = sampling.seed
    tensors = [
        bytes_tensor("text_input", [text_input]),
        from_numpy("stream", np.array([True])),
        bytes_tensor("sampling_parameters", [json.dumps(parameters, sort_keys=True)]),
        from_numpy("exclude_input_in_output", np.array([True])),
    ]
    tensors += [from_numpy(switch, np.array([True])) for switch in SWITCHES]
    return tensors


@dataclass
class Token:
    """One generated token as a response reported it."""

    text: str
    logprob: float
    # The most likely tokens at its position: decoded text -> log-probability.
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Generated:
    """A generation, accumulated from its streamed responses."""

    text: str = ""
    tokens: list[Token] = field(default_factory=list)
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cumulative_logprob: float = 0.0


class MalformedResponse(ValueError):
    """A response does not follow the contract."""


def _one(outputs: dict[str, common_pb2.InferTensor], name: str) -> common_pb2.InferTensor | None:
    return outputs.get(name)


def absorb(generated: Generated, outputs: Sequence[common_pb2.InferTensor]) -> list[Token]:
    """Adds one streamed response to ``generated``; returns the tokens it brought.

    A response's text is a delta (the prompt excluded); its token counts are deltas too, but
    ``num_input_tokens`` and ``cumulative_logprob`` are totals so far, as the vLLM backend sends them.
    """
    by_name = {tensor.name: tensor for tensor in outputs}
    text_output = _one(by_name, "text_output")
    if text_output is None:
        raise MalformedResponse("a response lacks text_output")
    delta = b"".join(bytes_elements(text_output, "text_output")).decode("utf-8", errors="replace")
    generated.text += delta
    new: list[Token] = []
    logprobs = _one(by_name, "logprobs")
    if logprobs is not None:
        for raw in bytes_elements(logprobs, "logprobs"):
            if raw in (b"null", b""):
                continue
            try:
                positions = json.loads(raw)
            except json.JSONDecodeError as error:
                raise MalformedResponse(f"logprobs is not JSON: {error}") from None
            new += [_token(position) for position in positions]
    if new:
        # The decoded texts of the sampled tokens may split a character differently from the
        # delta text; the delta is what the client reads, so the tokens carry it whole: each its
        # own piece, the last one whatever is left.
        _align(new, delta)
    elif delta:
        new = [Token(delta, 0.0)]
    generated.tokens += new
    reason = _one(by_name, "finish_reason")
    if reason is not None:
        value = b"".join(bytes_elements(reason, "finish_reason")).decode("utf-8", errors="replace")
        if value and value != "None":
            generated.finish_reason = value
    counts = _one(by_name, "num_input_tokens")
    if counts is not None and to_numpy(counts).size:
        generated.input_tokens = int(to_numpy(counts).reshape(-1)[0])
    counts = _one(by_name, "num_output_tokens")
    if counts is not None:
        generated.output_tokens += int(to_numpy(counts).astype(np.int64).sum())
    cumulative = _one(by_name, "cumulative_logprob")
    if cumulative is not None and to_numpy(cumulative).size:
        value = float(to_numpy(cumulative).reshape(-1)[0])
        if math.isfinite(value):
            generated.cumulative_logprob = value
    return new


def _token(position: object) -> Token:
    """One position of vLLM's logprobs layout, {token id: {logprob, rank, decoded_token}}, the
    sampled token first and then the most likely ones."""
    if not isinstance(position, dict) or not position:
        raise MalformedResponse("a logprobs position is not a non-empty object")
    entries = list(position.values())
    if not all(isinstance(e, dict) and isinstance(e.get("logprob"), (int, float)) for e in entries):
        raise MalformedResponse("a logprobs entry lacks a numeric logprob")
    top: dict[str, float] = {}
    for entry in entries:
        top.setdefault(str(entry.get("decoded_token", "")), float(entry["logprob"]))
    return Token(str(entries[0].get("decoded_token", "")), float(entries[0]["logprob"]), top)


def _align(tokens: list[Token], delta: str) -> None:
    rest = delta
    for token in tokens[:-1]:
        piece = token.text if rest.startswith(token.text) else ""
        token.text = piece
        rest = rest[len(piece):]
    tokens[-1].text = rest
