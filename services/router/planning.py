"""Turns a validated request and the registry's models into a plan, and names the plan's cache key.

Pure logic, no gRPC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from inferscale.errors import InvalidArgument, NotFound
from inferscale.tensors import tensors_digest_parts, validate_tensor
from inferscale.v1 import common_pb2, router_service_pb2

MAX_REQUEST_ID_CHARS = 128
MAX_TASK_CHARS = 128


def validate_request(request: router_service_pb2.InferRequest) -> None:
    """Raises InvalidArgument naming the first field that is malformed."""
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"request_id has {len(request.request_id)} characters, more than {MAX_REQUEST_ID_CHARS}")
    if not request.task:
        raise InvalidArgument("task must name the task whose models answer, for example 'digits'")
    if len(request.task) > MAX_TASK_CHARS:
        raise InvalidArgument(f"task has {len(request.task)} characters, more than {MAX_TASK_CHARS}")
    if not request.inputs:
        raise InvalidArgument("inputs must hold at least one tensor")
    for index, tensor in enumerate(request.inputs):
        validate_tensor(tensor, f"inputs[{index}]")
    if request.strategy not in common_pb2.Strategy.values():
        raise InvalidArgument(f"strategy {request.strategy} is not a known Strategy value")
    if request.model_name and request.strategy != common_pb2.STRATEGY_SINGLE:
        raise InvalidArgument("model_name may be set only with strategy STRATEGY_SINGLE")
    if request.strategy == common_pb2.STRATEGY_SINGLE and not request.model_name:
        raise InvalidArgument("model_name is required with strategy STRATEGY_SINGLE")
    threshold = request.confidence_threshold
    if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"confidence_threshold {threshold} is outside [0, 1] (0 means the default)")


def build_plan(
    request: router_service_pb2.InferRequest,
    models: Sequence[common_pb2.ModelInfo],
    default_threshold: float,
) -> common_pb2.Plan:
    """Builds the plan for a validated request from the task's routable models, cheapest tier first."""
    if not models:
        raise NotFound(f"task {request.task!r} has no routable model in the registry")
    threshold = request.confidence_threshold or default_threshold
    if request.strategy == common_pb2.STRATEGY_SINGLE:
        chosen = [m for m in models if m.model.name == request.model_name]
        if not chosen:
            names = ", ".join(m.model.name for m in models)
            raise NotFound(f"model_name {request.model_name!r} is not a routable model of task {request.task!r} ({names})")
        strategy = common_pb2.STRATEGY_SINGLE
    else:
        chosen = sorted(models, key=lambda m: (m.tier, m.cost, m.model.name))
        strategy = common_pb2.STRATEGY_CASCADE
    return common_pb2.Plan(
        strategy=strategy,
        task=request.task,
        steps=[
            common_pb2.PlanStep(
                model=common_pb2.ModelRef(name=m.model.name, version=m.model.version),
                tier=m.tier,
                accept_threshold=threshold,
                cost=m.cost,
            )
            for m in chosen
        ],
    )


def result_key(plan: common_pb2.Plan, inputs: Sequence[common_pb2.InferTensor]) -> str:
    """Returns the final-result cache key: a SHA-256 of the plan (models, versions, thresholds) and the inputs.

    The plan names each model's version, so a new version gives new keys and an old answer is
    never served for it.
    """
    digest = hashlib.sha256(b"inferscale.v1.final_result|")
    digest.update(plan.SerializeToString(deterministic=True))
    for part in tensors_digest_parts(inputs):
        digest.update(part)
    return digest.hexdigest()


def produced_by_current_versions(
    produced_by: Sequence[common_pb2.ModelRef], models: Sequence[common_pb2.ModelInfo]
) -> bool:
    """Returns whether every model version a cached value was made with is still the registry's current one.

    A cache entry of a replaced or removed model version must never be served, even before the
    invalidation that the orchestrator sends has reached the cache.
    """
    current = {m.model.name: m.model.version for m in models}
    return all(current.get(ref.name) == ref.version for ref in produced_by)
