"""The orchestrator's pure escalation logic: reading confidence and deciding to accept or escalate."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.escalation import decide, read_class_probabilities


def test_confidence_is_the_winning_probability() -> None:
    answer = read_class_probabilities(np.array([[0.1, 0.7, 0.2]], np.float32))
    assert answer.label == "1"
    assert answer.confidence == pytest.approx(0.7)


def test_a_batch_is_as_confident_as_its_least_sure_row() -> None:
    answer = read_class_probabilities(np.array([[0.9, 0.1], [0.4, 0.6]], np.float32))
    assert answer.label == "0,1"
    assert answer.confidence == pytest.approx(0.6)


def test_an_empty_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        read_class_probabilities(np.zeros((0, 10), np.float32))


def test_confident_answers_are_accepted() -> None:
    decision = decide(0.95, 0.9, is_last=False)
    assert decision.accept
    assert decision.reason == "confidence 0.950 >= threshold 0.900"


def test_unsure_answers_escalate_while_a_tier_is_left() -> None:
    decision = decide(0.62, 0.9, is_last=False)
    assert not decision.accept
    assert decision.reason == "confidence 0.620 < threshold 0.900"


def test_the_last_tier_is_accepted_whatever_its_confidence() -> None:
    decision = decide(0.3, 0.9, is_last=True)
    assert decision.accept
    assert "no tier is left" in decision.reason


def test_a_confidence_equal_to_the_threshold_is_accepted() -> None:
    assert decide(0.9, 0.9, is_last=False).accept


def test_between_the_bands_a_simple_request_is_accepted() -> None:
    decision = decide(0.8, 0.9, is_last=False, escalate_threshold=0.7, complexity=0.2)
    assert decision.accept
    assert decision.reason.startswith("confidence 0.800 in [0.700, 0.900)")


def test_between_the_bands_a_complex_request_escalates() -> None:
    decision = decide(0.8, 0.9, is_last=False, escalate_threshold=0.7, complexity=0.6)
    assert not decision.accept
    assert "complexity 0.60 >= 0.50" in decision.reason


def test_below_the_escalate_threshold_the_step_escalates_whatever_the_complexity() -> None:
    decision = decide(0.65, 0.9, is_last=False, escalate_threshold=0.7, complexity=0.0)
    assert not decision.accept
    assert decision.reason == "confidence 0.650 < escalate threshold 0.700"


def test_between_the_bands_the_expected_gain_per_cost_decides() -> None:
    from services.orchestrator.escalation import NextTier

    worth_it = decide(0.8, 0.9, is_last=False, escalate_threshold=0.7,
                      next_tier=NextTier(cost=2.0, expected_accuracy=0.99), min_gain_per_cost=0.05)
    assert not worth_it.accept and "0.0950 >= 0.0500" in worth_it.reason
    too_dear = decide(0.8, 0.9, is_last=False, escalate_threshold=0.7,
                      next_tier=NextTier(cost=20.0, expected_accuracy=0.99), min_gain_per_cost=0.05)
    assert too_dear.accept and "0.0095 < 0.0500" in too_dear.reason


def test_a_step_that_would_break_the_cost_ceiling_or_the_deadline_is_not_started() -> None:
    from services.orchestrator.escalation import stop_before

    assert stop_before(cost=20, spent=2.1, cost_ceiling=10, p95_ms=None, remaining_ms=None) == (
        "cost 2.10 + 20.00 would exceed the ceiling 10.00"
    )
    assert "exceeds the 5.0 ms left" in stop_before(cost=1, spent=0, cost_ceiling=0, p95_ms=12.0, remaining_ms=5.0)
    assert stop_before(cost=1, spent=0, cost_ceiling=0, p95_ms=3.0, remaining_ms=5.0) == ""
    assert stop_before(cost=1, spent=0, cost_ceiling=0, p95_ms=None, remaining_ms=0.1) == ""


@pytest.mark.parametrize("output", [[[0.2, 1.7]], [[-0.1, 0.9]], [[float("nan"), 0.5]]])
def test_an_output_that_is_no_probability_is_refused_rather_than_read_as_a_confidence(output: list) -> None:
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        read_class_probabilities(np.array(output, np.float32))
