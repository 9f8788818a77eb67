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
