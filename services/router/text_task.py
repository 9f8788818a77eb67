"""A text task's request: the bounds of its prompt, the sampling its models get, and whether its answer is a sample.

Pure logic, no gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferscale.errors import InvalidArgument
from inferscale.v1 import common_pb2, router_service_pb2
from services.orchestrator.registry import AGREEMENT, GENERATED_TEXT
from services.orchestrator.text.bounds import NOT_FOR_TEXT, TEXT_STRATEGIES

# The strategies whose calls draw samples: when a request leaves the temperature unset, they
# sample at the router's default rather than decode greedily.
SAMPLING_STRATEGIES = frozenset(
    {common_pb2.STRATEGY_SELF_CONSISTENCY, common_pb2.STRATEGY_BEST_OF_N, common_pb2.STRATEGY_SEARCH}
)
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7


@dataclass(frozen=True)
class TextDefaults:
    """What a text request that leaves its sampling unset gets, and who verifies best-of-N answers."""

    # The most tokens of one generation when the request sets max_tokens 0.
    max_tokens: int = DEFAULT_MAX_TOKENS
    # The temperature of the sampling strategies when the request sets none.
    temperature: float = DEFAULT_TEMPERATURE
    # The verifier of best-of-N and verifier-confidence cascades; "" means the task's highest tier.
    verifier_model: str = ""


# The settings' own defaults, for a router built without settings (tests, tools).
DEFAULT_TEXT_SETTINGS = TextDefaults()


def check_answer_kind(request: router_service_pb2.InferRequest, models: Sequence[common_pb2.ModelInfo]) -> None:
    """Refuses a request whose form does not fit its task: a prompt for a task that does not
    generate text, tensors for one that does, or a text strategy for a task without text."""
    generates_text = any(m.answer_kind == GENERATED_TEXT for m in models)
    if request.HasField("text") and not generates_text:
        kinds = ", ".join(sorted({m.answer_kind for m in models}))
        raise InvalidArgument(f"text is for tasks that generate text; task {request.task!r} answers {kinds}: send inputs")
    if request.inputs and generates_text:
        raise InvalidArgument(f"task {request.task!r} generates text: send its prompt in text, not inputs")
    if generates_text and request.strategy in NOT_FOR_TEXT:
        raise InvalidArgument(
            f"strategy {common_pb2.Strategy.Name(request.strategy)} does not combine text answers; task {request.task!r} "
            "generates text: use STRATEGY_SELF_CONSISTENCY or STRATEGY_BEST_OF_N to combine samples"
        )
    sampling = request.text.sampling
    if request.strategy in TEXT_STRATEGIES and sampling.HasField("temperature") and not sampling.temperature > 0:
        raise InvalidArgument(
            f"text.sampling.temperature must be above 0 with {common_pb2.Strategy.Name(request.strategy)}: "
            "greedy samples are all the same"
        )
    if generates_text and request.analyze_complexity:
        raise InvalidArgument(f"analyze_complexity needs input tensors; task {request.task!r} generates text")
    if request.strategy in TEXT_STRATEGIES and not generates_text:
        raise InvalidArgument(
            f"strategy {common_pb2.Strategy.Name(request.strategy)} is for tasks that generate text, "
            f"and task {request.task!r} does not"
        )


def resolved_text(
    text: common_pb2.TextPrompt, strategy: int, defaults: TextDefaults
) -> common_pb2.TextPrompt:
    """The prompt as the orchestrator gets it: max_tokens and temperature always set.

    An unset temperature is greedy (0) for the strategies that answer once per model, and the
    default temperature for those that draw samples.
    """
    resolved = common_pb2.TextPrompt()
    resolved.CopyFrom(text)
    sampling = resolved.sampling
    sampling.max_tokens = sampling.max_tokens or defaults.max_tokens
    if not sampling.HasField("temperature"):
        sampling.temperature = defaults.temperature if strategy in SAMPLING_STRATEGIES else 0.0
    return resolved


def answer_is_sampled(
    plan: common_pb2.Plan, text: common_pb2.TextPrompt, models: Sequence[common_pb2.ModelInfo]
) -> bool:
    """Whether the plan's text answer is a sample: a fresh run may answer otherwise, so no cache
    may stand in for it.

    It is when the plan samples (a sampling strategy, or a temperature above 0) or when one of its
    steps judges its answer by the agreement of several samples.
    """
    if plan.strategy in SAMPLING_STRATEGIES or text.sampling.temperature > 0:
        return True
    agreeing = {m.model.name for m in models if m.confidence_method == AGREEMENT}
    return any(step.model.name in agreeing for step in plan.steps)
