"""The bounds of a text prompt (docs/limits.md), checked the same way by the router and the orchestrator.

Pure logic, no gRPC.
"""

from __future__ import annotations

import math

from inferscale.errors import InvalidArgument
from inferscale.limits import (
    MAX_CONTEXT_TURNS,
    MAX_GENERATED_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_TEMPERATURE,
    MAX_TEXT_CHARS,
)
from inferscale.v1 import common_pb2
from services.orchestrator.text.prompts import ROLES

# The strategies that exist only for text answers: they vote on or verify samples.
TEXT_STRATEGIES = frozenset({common_pb2.STRATEGY_SELF_CONSISTENCY, common_pb2.STRATEGY_BEST_OF_N})
# The strategies whose plan says how many model calls they may make.
CALL_BUDGETED = frozenset({common_pb2.STRATEGY_SEARCH, *TEXT_STRATEGIES})
# The strategies that combine or route by input tensors and cannot take text answers.
NOT_FOR_TEXT = frozenset({common_pb2.STRATEGY_ENSEMBLE, common_pb2.STRATEGY_EXPERT})


def validate_text(text: common_pb2.TextPrompt, field: str = "text", *, least_tokens: int = 0) -> None:
    """Raises InvalidArgument naming the first field of ``text`` past its bound.

    ``least_tokens`` is 0 where max_tokens 0 asks for the default (the router's request), 1 where
    the default has been resolved already (the orchestrator's).

    Counts and lengths are read before what they count, so a hostile prompt costs no work that
    grows with it.
    """
    if len(text.prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(f"{field}.prompt has {len(text.prompt)} characters, more than {MAX_PROMPT_CHARS}")
    if not text.prompt.strip():
        raise InvalidArgument(f"{field}.prompt is required: the message the models answer")
    if len(text.context) > MAX_CONTEXT_TURNS:
        raise InvalidArgument(f"{field}.context holds {len(text.context)} turns, more than the {MAX_CONTEXT_TURNS} allowed")
    characters = len(text.prompt)
    for index, turn in enumerate(text.context):
        if turn.role not in ROLES:
            # A role is not counted in the text's bound: only its start is echoed back.
            raise InvalidArgument(f"{field}.context[{index}].role {turn.role[:32]!r} is not one of {', '.join(ROLES)}")
        characters += len(turn.content)
        if characters > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"{field}.prompt and {field}.context hold more than {MAX_TEXT_CHARS} characters in all "
                f"(past it at {field}.context[{index}])"
            )
    sampling = text.sampling
    if not least_tokens <= sampling.max_tokens <= MAX_GENERATED_TOKENS:
        default = " (0 means the default)" if least_tokens == 0 else ""
        raise InvalidArgument(
            f"{field}.sampling.max_tokens {sampling.max_tokens} is outside [{least_tokens}, {MAX_GENERATED_TOKENS}]{default}"
        )
    if sampling.HasField("temperature") and not (
        math.isfinite(sampling.temperature) and 0.0 <= sampling.temperature <= MAX_TEMPERATURE
    ):
        raise InvalidArgument(f"{field}.sampling.temperature {sampling.temperature} is outside [0, {MAX_TEMPERATURE:g}]")
