"""Learning per-tier cascade thresholds from feedback, replayed offline."""

from __future__ import annotations

import math
import random

import pytest

import services.monitor.policy as policy_module
from services.monitor.policy import MIN_WEIGHT, ScoredStep, ensemble_weights, learn_thresholds, replay


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


# A calibrated cheap tier (answers of confidence c are right about c of the time) and a top tier
# right on everything but 14 requests that nobody gets right: 700 right of 714.
TRAFFIC = (
    [request((0.999, True), (0.99, True))] * 400
    + [request((0.97, True), (0.99, True))] * 97
    + [request((0.97, False), (0.99, True))] * 3
    + [request((0.90, True), (0.95, True))] * 90
    + [request((0.90, False), (0.95, True))] * 10
    + [request((0.70, True), (0.90, True))] * 70
    + [request((0.70, False), (0.90, True))] * 30
    + [request((0.50, False), (0.60, False))] * 14
)


def test_learning_finds_the_cheapest_thresholds_that_match_the_top_tier() -> None:
    policy = learn_thresholds(TRAFFIC)
    assert policy.target_accuracy == pytest.approx(700 / 714)
    assert policy.replay.accuracy == pytest.approx(700 / 714)
    # Above 0.97 (where the cheap tier makes mistakes the top tier does not) and at most 0.999.
    assert 0.97 < policy.thresholds[1] <= 0.999
    assert policy.replay.mean_cost == pytest.approx(1 + 10 * 314 / 714)
    assert policy.version == learn_thresholds(TRAFFIC).version


def test_a_cheap_tiers_lucky_streak_is_not_trusted() -> None:
    # At 0.85 the cheap tier happened to be right five times of five, but its answers of about
    # that confidence are right four times in five: the replay alone would accept them, the
    # calibrated expectation (five answers at ~0.85, more than half an answer short) does not.
    lucky = (
        [request((0.999, True), (0.99, True))] * 300
        + [request((0.85, True), (0.99, True))] * 5
        + [request((0.80, True), (0.95, True))] * 40
        + [request((0.80, False), (0.95, True))] * 10
        + [request((0.50, False), (0.60, False))] * 5
    )
    assert replay(lucky, {1: 0.85}).accuracy == pytest.approx(355 / 360)  # as good as the top tier
    policy = learn_thresholds(lucky)
    assert policy.target_accuracy == pytest.approx(355 / 360)
    assert policy.thresholds[1] > 0.85
    assert policy.replay.accepted[1] == (300, 0)
    assert policy.target_accuracy - 0.5 / 360 <= policy.replay.expected_accuracy < policy.target_accuracy


def test_the_expectation_counts_cheaper_answers_at_their_calibrated_confidence() -> None:
    # Temperature 1 leaves confidences as they are; the last tier counts as scored.
    result = replay(DATA, {1: 0.9}, temperatures={1: 1.0, 2: 1.0})
    assert result.expected_accuracy == pytest.approx((0.99 + 0.97 + 0.92 + 1.0) / 4)


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


def test_ensemble_weights_are_the_log_odds_of_each_tiers_accuracy() -> None:
    weights = learn_thresholds(TRAFFIC).weights
    # Tier 1 is right on 657 of 714 answers, tier 2 on 700; smoothed: (right + 1) / (answers + 2).
    assert weights[1] == pytest.approx(math.log(658 / 58), abs=1e-3)
    assert weights[2] == pytest.approx(math.log(701 / 15), abs=1e-3)
    assert weights[2] > weights[1]


def test_a_member_no_better_than_chance_keeps_a_small_positive_weight() -> None:
    coin = [request((0.6, index % 2 == 0), (0.9, True)) for index in range(10)] + [request((0.6, False), (0.9, True))]
    assert ensemble_weights(coin)[1] == MIN_WEIGHT


def tiered_traffic(tiers: int, count: int, seed: int) -> list[list[ScoredStep]]:
    """Requests every one of ``tiers`` tiers answered: each tier is costlier, more often right and surer when right."""
    rng = random.Random(seed)
    traffic = []
    for _ in range(count):
        ease = rng.random()
        steps = []
        for tier in range(1, tiers + 1):
            chance = min(0.99, 0.5 + 0.08 * tier + 0.25 * ease)
            right = rng.random() < chance
            confidence = min(1.0, max(0.0, round((chance if right else chance - 0.25) + rng.gauss(0, 0.08), 3)))
            steps.append(ScoredStep(tier, confidence, right, 2.0**tier))
        traffic.append(steps)
    return traffic


@pytest.fixture
def bounded_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails a test whose learning replays more than 4096 threshold sets one by one."""
    replayed = []

    def counted_replay(*args, **kwargs):  # type: ignore[no-untyped-def]
        replayed.append(args)
        if len(replayed) > 4096:
            raise AssertionError("the learner replays more than 4096 threshold sets")
        return replay(*args, **kwargs)

    monkeypatch.setattr(policy_module, "replay", counted_replay)


@pytest.mark.usefixtures("bounded_replays")
def test_learning_for_six_tiers_replays_a_bounded_number_of_threshold_sets() -> None:
    # Every combination of the grid for six tiers would be 537,824 replays.
    traffic = tiered_traffic(6, 400, seed=6)
    learned = learn_thresholds(traffic, target_accuracy=0.9)
    assert learned.candidates <= policy_module.MAX_POLICY_CANDIDATES
    assert sorted(learned.thresholds) == [1, 2, 3, 4, 5]
    assert learned.replay.accuracy >= 0.9
    # Cheaper than always escalating to the top tier (the cost of every tier: 2 + 4 + ... + 64).
    assert learned.replay.mean_cost < 126


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_coordinate_search_finds_the_policy_every_combination_finds_on_five_tiers(seed: int) -> None:
    traffic = tiered_traffic(5, 300, seed)
    searched = learn_thresholds(traffic, target_accuracy=0.9)
    exhaustive = learn_thresholds(traffic, target_accuracy=0.9, max_candidates=14**4)
    assert searched.candidates < exhaustive.candidates // 20 and exhaustive.candidates == 14**4
    assert searched.replay.mean_cost == pytest.approx(exhaustive.replay.mean_cost)
    assert searched.replay.accuracy >= 0.9


@pytest.mark.usefixtures("bounded_replays")
def test_no_policy_is_learned_for_more_tiers_than_a_plan_holds() -> None:
    with pytest.raises(ValueError, match="the scored requests have 33 tiers, more than the 32 a policy is learned for"):
        learn_thresholds(tiered_traffic(33, 20, seed=33))
