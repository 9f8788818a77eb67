"""Turns a validated request and the registry's models into a plan, and names the plan's cache key.

Pure logic, no gRPC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

from inferscale.errors import FailedPrecondition, InvalidArgument, NotFound
from inferscale.limits import MAX_INPUT_TENSORS, MAX_PLAN_STEPS, MAX_SEARCH_CALLS
from inferscale.tensors import require_finite, tensors_digest_parts, validate_tensor
from inferscale.v1 import common_pb2, router_service_pb2
from services.orchestrator.escalation import LEFT_ROUTING
from services.orchestrator.registry import GENERATED_TEXT, VERIFIER
from services.orchestrator.text.bounds import CALL_BUDGETED, validate_text
from services.router.semantic import validate_embedding
from services.router.text_task import check_answer_kind

MAX_REQUEST_ID_CHARS = 128
MAX_TASK_CHARS = 128
# An adaptive search's calls when the request names none (at most inferscale.limits.MAX_SEARCH_CALLS).
DEFAULT_SEARCH_CALLS = 8
# The complexity score at which an analysed cascade skips its cheapest tier.
DEFAULT_SKIP_COMPLEXITY = 0.25
# The strategies whose plans carry a number of calls (Plan.max_calls).
# The strategies that may name their model: the one that runs, or the one that samples.
MODEL_NAMED = frozenset({common_pb2.STRATEGY_SINGLE, common_pb2.STRATEGY_SELF_CONSISTENCY, common_pb2.STRATEGY_BEST_OF_N})
# The strategies whose named model samples text again and again.
SAMPLED_TEXT = frozenset({common_pb2.STRATEGY_SELF_CONSISTENCY, common_pb2.STRATEGY_BEST_OF_N})


def validate_request(request: router_service_pb2.InferRequest, *, finite_inputs: bool = True) -> None:
    """Raises InvalidArgument naming the first field that is malformed; with ``finite_inputs``, NaN and
    infinity in floating-point inputs count as malformed. A request carries a prompt (``text``, for
    a task that generates text) or input tensors, never both."""
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(f"request_id has {len(request.request_id)} characters, more than {MAX_REQUEST_ID_CHARS}")
    if not request.task:
        raise InvalidArgument("task must name the task whose models answer, for example 'digits'")
    if len(request.task) > MAX_TASK_CHARS:
        raise InvalidArgument(f"task has {len(request.task)} characters, more than {MAX_TASK_CHARS}")
    if request.HasField("text"):
        if request.inputs:
            raise InvalidArgument("text and inputs are exclusive: a text task takes its prompt in text, others take inputs")
        validate_text(request.text)
    elif not request.inputs:
        raise InvalidArgument("inputs must hold at least one tensor")
    _bound_entries("inputs", len(request.inputs), MAX_INPUT_TENSORS)
    _bound_entries("tier_thresholds", len(request.tier_thresholds), MAX_PLAN_STEPS)
    _bound_entries("member_weights", len(request.member_weights), MAX_PLAN_STEPS)
    for index, tensor in enumerate(request.inputs):
        validate_tensor(tensor, f"inputs[{index}]")
        if finite_inputs:
            require_finite(tensor, f"inputs[{index}]")
    if request.strategy not in common_pb2.Strategy.values():
        raise InvalidArgument(f"strategy {request.strategy} is not a known Strategy value")
    if request.model_name and request.strategy not in MODEL_NAMED:
        raise InvalidArgument("model_name may be set only with strategy STRATEGY_SINGLE, STRATEGY_SELF_CONSISTENCY or STRATEGY_BEST_OF_N")
    if request.strategy == common_pb2.STRATEGY_SINGLE and not request.model_name:
        raise InvalidArgument("model_name is required with strategy STRATEGY_SINGLE")
    threshold = request.confidence_threshold
    if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"confidence_threshold {threshold} is outside [0, 1] (0 means the default)")
    low = request.escalate_threshold
    if math.isnan(low) or not 0.0 <= low <= 1.0:
        raise InvalidArgument(f"escalate_threshold {low} is outside [0, 1] (0 means the default)")
    if low and threshold and low > threshold:
        raise InvalidArgument(f"escalate_threshold {low} exceeds confidence_threshold {threshold}")
    if not (request.cost_ceiling >= 0 and math.isfinite(request.cost_ceiling)):
        raise InvalidArgument(f"cost_ceiling {request.cost_ceiling} must be a finite number >= 0 (0 means none)")
    if request.aggregation not in common_pb2.Aggregation.values():
        raise InvalidArgument(f"aggregation {request.aggregation} is not a known Aggregation value")
    if request.aggregation and request.strategy != common_pb2.STRATEGY_ENSEMBLE:
        raise InvalidArgument("aggregation may be set only with strategy STRATEGY_ENSEMBLE")
    validate_embedding(request.embedding)
    seen_tiers: set[int] = set()
    for index, tier in enumerate(request.tier_thresholds):
        field = f"tier_thresholds[{index}]"
        _claim_tier(field, tier.tier, seen_tiers)
        if math.isnan(tier.accept_threshold) or not 0.0 < tier.accept_threshold <= 1.0:
            raise InvalidArgument(f"{field}.accept_threshold {tier.accept_threshold} is outside (0, 1]")
        if math.isnan(tier.escalate_threshold) or not 0.0 <= tier.escalate_threshold <= tier.accept_threshold:
            raise InvalidArgument(f"{field}.escalate_threshold {tier.escalate_threshold} is outside [0, accept_threshold]")
    if not 0 <= request.max_calls <= MAX_SEARCH_CALLS:
        raise InvalidArgument(f"max_calls {request.max_calls} is outside [0, {MAX_SEARCH_CALLS}] (0 means the default)")
    if request.max_calls and request.strategy not in CALL_BUDGETED:
        raise InvalidArgument(
            "max_calls may be set only with strategy STRATEGY_SEARCH, STRATEGY_SELF_CONSISTENCY or STRATEGY_BEST_OF_N"
        )
    if request.analyze_complexity and request.strategy not in (common_pb2.STRATEGY_UNSPECIFIED, common_pb2.STRATEGY_CASCADE):
        raise InvalidArgument("analyze_complexity may be set only with a cascade (STRATEGY_EXPERT always analyses)")
    target = request.target_accuracy
    if math.isnan(target) or not 0.0 <= target <= 1.0:
        raise InvalidArgument(f"target_accuracy {target} is outside [0, 1] (0 means none)")
    if target and request.strategy not in (common_pb2.STRATEGY_UNSPECIFIED, common_pb2.STRATEGY_CASCADE):
        raise InvalidArgument("target_accuracy may be set only with a cascade")
    if target and (request.confidence_threshold or request.escalate_threshold or request.tier_thresholds):
        raise InvalidArgument("target_accuracy replaces thresholds: set it or confidence_threshold, escalate_threshold "
                              "and tier_thresholds, not both")
    if request.member_weights and request.strategy != common_pb2.STRATEGY_ENSEMBLE:
        raise InvalidArgument("member_weights may be set only with strategy STRATEGY_ENSEMBLE")
    weighted_tiers: set[int] = set()
    for index, member in enumerate(request.member_weights):
        field = f"member_weights[{index}]"
        _claim_tier(field, member.tier, weighted_tiers)
        if not (member.weight > 0 and math.isfinite(member.weight)):
            raise InvalidArgument(f"{field}.weight {member.weight} must be a finite number > 0")


def _named_model(request: router_service_pb2.InferRequest, models: Sequence[common_pb2.ModelInfo]) -> common_pb2.ModelInfo:
    """The task's model that ``model_name`` names; NotFound, listing the task's models, when there is none."""
    named = next((m for m in models if m.model.name == request.model_name), None)
    if named is None:
        names = ", ".join(m.model.name for m in models)
        raise NotFound(f"model_name {request.model_name!r} is not a routable model of task {request.task!r} ({names})")
    return named


def _strongest(models: Sequence[common_pb2.ModelInfo]) -> common_pb2.ModelInfo:
    """The highest-tier model, the costlier of a tier's (then by name, so that the choice is stable)."""
    return max(models, key=lambda m: (m.tier, m.cost, m.model.name))


def _bound_entries(field: str, count: int, most: int) -> None:
    """Refuses a repeated field with more entries than ``most``, before any entry is read."""
    if count > most:
        raise InvalidArgument(f"{field} holds {count} entries, more than the {most} allowed")


def _claim_tier(field: str, tier: int, seen: set[int]) -> None:
    """Refuses a tier below 1 or one already named in the same list."""
    if tier < 1 or tier in seen:
        raise InvalidArgument(f"{field}.tier {tier} must be at least 1 and appear once")
    seen.add(tier)


def build_plan(
    request: router_service_pb2.InferRequest,
    models: Sequence[common_pb2.ModelInfo],
    default_threshold: float,
    default_escalate_threshold: float | None = None,
    *,
    default_max_calls: int = DEFAULT_SEARCH_CALLS,
    skip_complexity: float = DEFAULT_SKIP_COMPLEXITY,
    verifier_model: str = "",
) -> common_pb2.Plan:
    """Builds the plan for a validated request from the task's routable models, cheapest tier first.

    Thresholds: a request that sets neither gets the configured pair (accept, escalate); one
    that sets only ``confidence_threshold`` gets a single-threshold cascade; an escalate
    threshold never exceeds the accept threshold. A cost ceiling below the first step's cost is
    refused; an ensemble keeps the cheapest members that fit under it. An adaptive search may
    call every model, up to ``max_calls`` times in all (the request's, else ``default_max_calls``).
    Complexity analysis (a cascade that asks for it, and every expert plan) puts the task's
    complexity model in the plan; a cascade then skips its cheapest tier at ``skip_complexity``.

    Text tasks: self-consistency samples one model (``model_name``'s, else the highest tier) and
    best-of-N ``model_name``'s, else spreads its generations over every text model, each up to
    ``max_calls`` calls in all, as a search; best-of-N, and a plan with a step whose confidence is a verifier's, are
    judged by ``verifier_model``, by default the task's highest-tier text model.
    """
    if not models:
        raise NotFound(f"task {request.task!r} has no routable model in the registry")
    check_answer_kind(request, models)
    threshold = request.confidence_threshold or default_threshold
    if request.escalate_threshold:
        escalate = request.escalate_threshold
    elif request.confidence_threshold or default_escalate_threshold is None:
        escalate = threshold
    else:
        escalate = min(default_escalate_threshold, threshold)
    texts = [m for m in models if m.answer_kind == GENERATED_TEXT]
    named = _named_model(request, models) if request.model_name else None
    if named is not None and request.strategy in SAMPLED_TEXT and named.answer_kind != GENERATED_TEXT:
        raise InvalidArgument(
            f"model_name {request.model_name!r} answers {named.answer_kind}: "
            f"{common_pb2.Strategy.Name(request.strategy)} samples a model that generates text"
        )
    if request.strategy == common_pb2.STRATEGY_SINGLE:
        chosen = [_named_model(request, models)]
        strategy = common_pb2.STRATEGY_SINGLE
    elif request.strategy == common_pb2.STRATEGY_SELF_CONSISTENCY:
        # Every sample from one model: the named one, else the strongest, whose votes count most.
        chosen = [named if named is not None else _strongest(texts)]
        strategy = common_pb2.STRATEGY_SELF_CONSISTENCY
    else:
        chosen = sorted(models, key=lambda m: (m.tier, m.cost, m.model.name))
        strategy = request.strategy or common_pb2.STRATEGY_CASCADE
        if strategy == common_pb2.STRATEGY_REFINEMENT:
            # A draft from the cheapest model, then every model that can refine an answer.
            # A text model refines by reading the draft in its prompt; others through their refinement input.
            refiners = [m for m in chosen[1:] if m.refinement_input or m.answer_kind == GENERATED_TEXT]
            if not refiners:
                raise NotFound(f"task {request.task!r} has no model that declares inferscale.refinement_input")
            chosen = [chosen[0], *refiners]
        if strategy == common_pb2.STRATEGY_EXPERT:
            chosen = [m for m in chosen if m.expert_high > 0]
            if not chosen:
                raise NotFound(f"task {request.task!r} has no model that declares inferscale.expert_complexity")
        if strategy == common_pb2.STRATEGY_BEST_OF_N:
            # Every sample from the named model, else from the task's text models in turn.
            chosen = [named] if named is not None else [m for m in chosen if m.answer_kind == GENERATED_TEXT]
    if len(chosen) > MAX_PLAN_STEPS:
        raise FailedPrecondition(
            f"task {request.task!r} has {len(chosen)} routable models, more than the {MAX_PLAN_STEPS} a plan may hold; "
            "unload some or split the task"
        )
    complexity_model = ""
    if request.analyze_complexity or strategy == common_pb2.STRATEGY_EXPERT:
        complexity_model = next((m.complexity_model for m in chosen if m.complexity_model), "")
        if not complexity_model:
            raise NotFound(f"task {request.task!r} has no model that declares inferscale.complexity_model")
    ceiling = request.cost_ceiling
    if ceiling and chosen[0].cost > ceiling:
        raise InvalidArgument(
            f"cost_ceiling {ceiling} is below the cost {chosen[0].cost} of the plan's first model, {chosen[0].model.name}"
        )
    if ceiling and strategy == common_pb2.STRATEGY_ENSEMBLE:
        affordable, spent = [], 0.0
        for m in chosen:
            if spent + m.cost <= ceiling:
                affordable.append(m)
                spent += m.cost
        chosen = affordable
    by_tier = {t.tier: (t.accept_threshold, t.escalate_threshold or t.accept_threshold) for t in request.tier_thresholds}
    weights = {w.tier: w.weight for w in request.member_weights}
    aggregation = request.aggregation
    grids = any(m.answer_kind == "grid" for m in chosen)
    if strategy == common_pb2.STRATEGY_ENSEMBLE and not aggregation:
        # Probabilities average; grids, discrete answers each scored on the task, go by best score.
        aggregation = common_pb2.AGGREGATION_BEST_SCORE if grids else common_pb2.AGGREGATION_MEAN_PROBABILITY
    elif strategy == common_pb2.STRATEGY_SEARCH and grids:
        # A search's score-weighted vote would let one solver's repeated near misses outweigh
        # another's exact reproduction of the training pairs: grids go by best score here too.
        aggregation = common_pb2.AGGREGATION_BEST_SCORE
    verifier = ""
    if strategy == common_pb2.STRATEGY_BEST_OF_N or any(m.confidence_method == VERIFIER for m in chosen):
        verifier = verifier_model or _strongest(texts).model.name
    return common_pb2.Plan(
        strategy=strategy,
        task=request.task,
        cost_ceiling=ceiling,
        aggregation=aggregation,
        max_calls=(request.max_calls or default_max_calls) if strategy in CALL_BUDGETED else 0,
        verifier_model=verifier,
        complexity_model=complexity_model,
        skip_complexity=skip_complexity if complexity_model and strategy == common_pb2.STRATEGY_CASCADE else 0.0,
        steps=[
            common_pb2.PlanStep(
                model=common_pb2.ModelRef(name=m.model.name, version=m.model.version),
                tier=m.tier,
                accept_threshold=by_tier.get(m.tier, (threshold, escalate))[0],
                escalate_threshold=by_tier.get(m.tier, (threshold, escalate))[1],
                cost=m.cost,
                weight=weights.get(m.tier, 1.0),
            )
            for m in chosen
        ],
    )


def result_key(
    plan: common_pb2.Plan,
    inputs: Sequence[common_pb2.InferTensor],
    judges: Sequence[common_pb2.ModelRef] = (),
    text: common_pb2.TextPrompt | None = None,
) -> str:
    """Returns the final-result cache key: a SHA-256 of the plan (models, versions, thresholds) and
    what the models read, the inputs or the prompt (its turns and sampling limits, as resolved).

    The plan names each model's version, so a new version gives new keys and an old answer is
    never served for it. It names its complexity model and its verifier only by name: ``judges``,
    those models' current versions, are hashed too, since a new one may decide otherwise.
    """
    digest = hashlib.sha256(b"inferscale.v1.final_result|")
    digest.update(plan.SerializeToString(deterministic=True))
    for judge in judges:
        digest.update(b"|judged by|" + judge.SerializeToString(deterministic=True))
    if text is not None:
        digest.update(b"|text|" + text.SerializeToString(deterministic=True))
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


def answers_whole_plan(steps: Iterable[common_pb2.EscalationStep]) -> bool:
    """Returns whether an answer is the one its whole plan gives, the only kind kept under the plan's key.

    It is not when a step stopped (the deadline, the cost ceiling), failed, or was skipped because
    its model left routing between planning and running: once the model is back at the same
    version, the same plan must run it rather than serve the lower tiers' best answer. Steps the
    plan passes over by its own rules (an analysed cascade's cheapest tier, the experts whose band
    does not hold the score) do not count: the same plan passes them over again.
    """
    return not any(
        step.decision in (common_pb2.DECISION_STOPPED, common_pb2.DECISION_FAILED)
        or (step.decision == common_pb2.DECISION_SKIPPED and step.reason.endswith(LEFT_ROUTING))
        for step in steps
    )
