"""Checks an ExecuteRequest before any of it runs, and finds each plan step's model in the registry.

No gRPC: bad input raises the domain errors of ``inferscale.errors``, each naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from inferscale.errors import InvalidArgument, NotFound
from inferscale.limits import MAX_INPUT_TENSORS, MAX_PLAN_STEPS, MAX_SEARCH_CALLS
from inferscale.tensors import validate_tensor
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.registry import VERIFIER, RegisteredModel, RegistrySnapshot
from services.orchestrator.text.bounds import (
    CALL_BUDGETED,
    NOT_FOR_TEXT,
    TEXT_STRATEGIES,
    validate_text,
)

# The longest request id: the router's 128 characters and the suffix of a verification or an audit.
MAX_REQUEST_ID_CHARS = 256


def validate(
    request: orchestrator_service_pb2.ExecuteRequest, registry: RegistrySnapshot, strategies: Collection[int]
) -> list[RegisteredModel | None]:
    """Checks the request; returns each step's model, or None for a step whose model left routing.

    ``strategies`` are the plan strategies the orchestrator runs.
    """
    plan = request.plan
    # Counts and lengths first, read without reading what they count: they bound every check after them.
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"request_id has {len(request.request_id)} characters, more than {MAX_REQUEST_ID_CHARS}")
    if len(plan.steps) > MAX_PLAN_STEPS:
        raise InvalidArgument(f"plan.steps holds {len(plan.steps)} steps, more than the {MAX_PLAN_STEPS} allowed")
    if len(request.inputs) > MAX_INPUT_TENSORS:
        raise InvalidArgument(f"inputs holds {len(request.inputs)} tensors, more than the {MAX_INPUT_TENSORS} allowed")
    if not plan.steps:
        raise InvalidArgument("plan.steps must hold at least one step")
    if plan.strategy == common_pb2.STRATEGY_SINGLE and len(plan.steps) != 1:
        raise InvalidArgument(f"plan.steps of a STRATEGY_SINGLE plan must hold one step, not {len(plan.steps)}")
    if plan.strategy not in strategies:
        raise InvalidArgument(f"plan.strategy {plan.strategy} is not a strategy the orchestrator runs")
    if plan.strategy in CALL_BUDGETED and not 1 <= plan.max_calls <= MAX_SEARCH_CALLS:
        raise InvalidArgument(
            f"plan.max_calls {plan.max_calls} of a {common_pb2.Strategy.Name(plan.strategy)} plan is outside [1, {MAX_SEARCH_CALLS}]"
        )
    if plan.strategy not in CALL_BUDGETED and plan.max_calls:
        raise InvalidArgument(
            "plan.max_calls may be set only with strategy STRATEGY_SEARCH, STRATEGY_SELF_CONSISTENCY or STRATEGY_BEST_OF_N"
        )
    if plan.strategy == common_pb2.STRATEGY_BEST_OF_N and not plan.verifier_model:
        raise InvalidArgument("plan.verifier_model is required with strategy STRATEGY_BEST_OF_N")
    if plan.strategy == common_pb2.STRATEGY_EXPERT and not plan.complexity_model:
        raise InvalidArgument("plan.complexity_model is required with strategy STRATEGY_EXPERT")
    if not 0.0 <= plan.skip_complexity <= 1.0:
        raise InvalidArgument(f"plan.skip_complexity {plan.skip_complexity} is outside [0, 1]")
    if plan.aggregation not in common_pb2.Aggregation.values():
        raise InvalidArgument(f"plan.aggregation {plan.aggregation} is not a known Aggregation value")
    if not (plan.cost_ceiling >= 0 and math.isfinite(plan.cost_ceiling)):
        raise InvalidArgument(f"plan.cost_ceiling {plan.cost_ceiling} must be a finite number >= 0")
    if not 0.0 <= plan.complexity <= 1.0:
        raise InvalidArgument(f"plan.complexity {plan.complexity} is outside [0, 1]")
    text = request.HasField("text")
    if text:
        if request.inputs:
            raise InvalidArgument("a text request carries no inputs: set text or inputs, not both")
        validate_text(request.text, least_tokens=1)
        if plan.strategy in NOT_FOR_TEXT or plan.complexity_model:
            raise InvalidArgument(
                f"a text request cannot run {common_pb2.Strategy.Name(plan.strategy)} or a complexity model: "
                "they combine or score input tensors"
            )
        if plan.strategy in TEXT_STRATEGIES and not request.text.sampling.temperature > 0:
            raise InvalidArgument(
                f"text.sampling.temperature must be above 0 with {common_pb2.Strategy.Name(plan.strategy)}: "
                "greedy samples are all the same"
            )
    elif not request.inputs:
        raise InvalidArgument("inputs must hold at least one tensor (or text, for a task whose models generate text)")
    elif plan.strategy in TEXT_STRATEGIES:
        raise InvalidArgument(f"{common_pb2.Strategy.Name(plan.strategy)} needs a text request: set text, not inputs")
    for index, tensor in enumerate(request.inputs):
        validate_tensor(tensor, f"inputs[{index}]")
    models: list[RegisteredModel | None] = []
    problems = []
    for index, step in enumerate(plan.steps):
        if not 0.0 <= step.accept_threshold <= 1.0:
            raise InvalidArgument(f"plan.steps[{index}].accept_threshold {step.accept_threshold} is outside [0, 1]")
        if not 0.0 <= step.escalate_threshold <= step.accept_threshold:
            raise InvalidArgument(
                f"plan.steps[{index}].escalate_threshold {step.escalate_threshold} is outside [0, accept_threshold]"
            )
        if not (step.weight >= 0 and math.isfinite(step.weight)):
            raise InvalidArgument(f"plan.steps[{index}].weight {step.weight} must be a finite number >= 0")
        model = registry.get(step.model.name)
        if model is not None and model.routable and model.generates_text != text:
            raise InvalidArgument(
                f"plan.steps[{index}].model {model.name!r} "
                + ("generates text: the request needs text, not inputs" if model.generates_text else "does not generate text: the request needs inputs")
            )
        if model is None or not model.routable:
            # The plan may be a moment older than the registry: a model removed or unloaded
            # since is skipped rather than failing the request.
            problems.append(
                f"plan.steps[{index}].model {step.model.name!r} "
                + ("is not in the registry" if model is None else f"cannot be routed to: {model.problem}")
            )
            models.append(None)
        else:
            models.append(model)
    if all(model is None for model in models):
        raise NotFound("; ".join(problems))
    if plan.strategy == common_pb2.STRATEGY_BEST_OF_N or any(m is not None and m.confidence_method == VERIFIER for m in models):
        # Checked before any generation runs: the verification comes after it.
        verifier = registry.get(plan.verifier_model) if plan.verifier_model else None
        if verifier is None or not verifier.ready or verifier.problem or not verifier.generates_text:
            raise InvalidArgument(f"plan.verifier_model {plan.verifier_model!r} is not a ready model that generates text")
    return models
