"""The ensemble's pure aggregation rules and disagreement measures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.orchestrator.aggregation import mean_probability, plurality, vote_entropy, weighted_vote
from services.orchestrator.latency import RecentSteps


def test_vote_entropy_is_zero_when_members_agree_and_one_bit_for_an_even_split() -> None:
    assert vote_entropy(["3", "3", "3"]) == 0.0
    assert vote_entropy(["3", "5"]) == pytest.approx(1.0)
    assert vote_entropy(["3", "5", "7"]) == pytest.approx(math.log2(3))


def test_mean_probability_averages_members_and_reports_their_spread() -> None:
    a = np.array([[0.6, 0.4]], np.float32)
    b = np.array([[0.2, 0.8]], np.float32)
    combined = mean_probability([a, b])
    assert combined.label == "1"
    assert combined.confidence == pytest.approx(0.6)
    assert combined.vote_entropy == pytest.approx(1.0)
    assert combined.probability_spread == pytest.approx(0.4)
    np.testing.assert_allclose(combined.probabilities, [[0.4, 0.6]])


def test_mean_probability_weights_members() -> None:
    a = np.array([[0.9, 0.1]], np.float32)
    b = np.array([[0.2, 0.8]], np.float32)
    assert mean_probability([a, b], [3.0, 1.0]).label == "0"
    with pytest.raises(ValueError, match="weights"):
        mean_probability([a, b], [0.0, 0.0])


def test_weighted_vote_counts_weight_not_heads() -> None:
    combined = weighted_vote(["3", "5", "5"], [0.9, 0.6, 0.6], [5.0, 1.0, 1.0])
    assert combined.label == "3"
    assert combined.confidence == pytest.approx(5 / 7)


def test_weighted_vote_breaks_ties_by_confidence() -> None:
    assert weighted_vote(["3", "5"], [0.7, 0.9], [1.0, 1.0]).label == "5"


def test_plurality_of_equal_answers_wins_and_ties_go_to_the_first_member() -> None:
    assert plurality(["a", "b", "b"]).label == "b"
    assert plurality(["a", "b"]).label == "a"
    assert plurality(["a", "b", "b"]).confidence == pytest.approx(2 / 3)


def test_an_empty_ensemble_is_an_error() -> None:
    for rule in (lambda: mean_probability([]), lambda: weighted_vote([], [], []), lambda: plurality([])):
        with pytest.raises(ValueError):
            rule()


def test_recent_steps_predict_latency_by_the_95th_percentile_and_keep_mean_confidence() -> None:
    window = RecentSteps(size=100)
    assert window.p95_ms("m") is None and window.mean_confidence("m") is None
    for value in range(1, 101):
        window.observe("m", float(value), 0.5)
    assert window.p95_ms("m") == pytest.approx(95.05)
    for _ in range(100):
        window.observe("m", 1.0, 0.9)  # the old, slow calls fall out of the window
    assert window.p95_ms("m") == pytest.approx(1.0)
    assert window.mean_confidence("m") == pytest.approx(0.9)
