"""Learning per-tier cascade thresholds from feedback, replayed offline."""

from __future__ import annotations

import pytest

from services.monitor.policy import ScoredStep, error_upper_bound, learn_thresholds, replay


def request(cheap: tuple[float, bool], strong: tuple[float, bool]) -> list[ScoredStep]:
    return [ScoredStep(1, cheap[0], cheap[1], 1.0), ScoredStep(2, strong[0], strong[1], 10.0)]


DATA = [
    request((0.99, True), (0.99, True)),   # easy: the cheap tier is sure and right
    request((0.97, True), (0.99, True)),
    request((0.92, False), (0.95, True)),  # the cheap tier is fairly sure but wrong
    request((0.60, False), (0.90, True)),
]


def test_replay_accepts_at_the_first_tier_that_reaches_its_threshold() -> None:
    lenient = replay(DATA, {1: 0.9})  # the cheap tier's 0.92 mistake is accepted
    assert (lenient.accuracy, lenient.mean_cost) == (0.75, pytest.approx((1 + 1 + 1 + 11) / 4))
    strict = replay(DATA, {1: 1.0})
    assert (strict.accuracy, strict.mean_cost) == (1.0, 11.0)


# Enough requests for the confidence bound to trust a tier: the top tier is right on 700 of 714.
TRAFFIC = (
    [request((0.99, True), (0.99, True))] * 500  # easy: the cheap tier is sure and right
    + [request((0.92, False), (0.95, True))] * 100  # the cheap tier is fairly sure, but wrong
    + [request((0.60, False), (0.90, True))] * 100  # hard
    + [request((0.50, False), (0.60, False))] * 14  # wrong everywhere
)


def test_learning_finds_the_cheapest_trusted_thresholds_that_match_the_top_tier() -> None:
    policy = learn_thresholds(TRAFFIC)
    assert policy.target_accuracy == pytest.approx(700 / 714)
    assert policy.replay.accuracy == pytest.approx(700 / 714)
    # Above 0.92 (the cheap tier's confident mistakes) and at most 0.99.
    assert 0.92 < policy.thresholds[1] <= 0.99
    assert policy.replay.mean_cost == pytest.approx(1 + 10 * 214 / 714)
    assert policy.version == learn_thresholds(TRAFFIC).version


def test_a_tier_is_not_trusted_on_too_few_answers() -> None:
    # Four requests cannot show that the cheap tier is as good as the top one: everything escalates.
    policy = learn_thresholds(DATA)
    assert policy.replay.accepted.get(1, (0, 0))[0] == 0
    assert policy.replay.accuracy == 1.0 and policy.replay.mean_cost == 11.0


def test_the_error_bound_is_clopper_pearsons() -> None:
    assert error_upper_bound(0, 300) == pytest.approx(1 - 0.05 ** (1 / 300), rel=1e-6)
    assert error_upper_bound(0, 0) == 1.0 and error_upper_bound(3, 3) == 1.0
    assert error_upper_bound(2, 300) > error_upper_bound(0, 300)


def test_a_lower_target_buys_less_compute() -> None:
    cheap = learn_thresholds(TRAFFIC, target_accuracy=0.8)
    assert cheap.replay.accuracy >= 0.8
    assert cheap.replay.mean_cost < learn_thresholds(TRAFFIC).replay.mean_cost


def test_an_unreachable_target_gives_the_most_accurate_policy() -> None:
    wrong_everywhere = [request((0.9, False), (0.9, False)), request((0.9, True), (0.9, False))]
    policy = learn_thresholds(wrong_everywhere, target_accuracy=1.0)
    assert policy.replay.accuracy == 0.5


def test_requests_missing_a_tier_are_not_used_and_none_complete_is_an_error() -> None:
    partial = [[ScoredStep(1, 0.9, True, 1.0)], *TRAFFIC]
    assert learn_thresholds(partial).requests == len(TRAFFIC)
    with pytest.raises(ValueError, match="exploration"):
        learn_thresholds([])
