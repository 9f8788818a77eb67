"""Adaptive multi-model search, pure: which arm is drawn, what is available, and how answers combine."""

from __future__ import annotations

import numpy as np
import pytest

from services.orchestrator.adaptive_search import REFINE, SAMPLE, AdaptiveSearch, SearchMember

SAMPLER = SearchMember(samples=True, refines=False, cost=1.0)
FIXED = SearchMember(samples=False, refines=False, cost=1.0)
REFINER = SearchMember(samples=False, refines=True, cost=2.0)


def search(*members: SearchMember, seed: int = 0) -> AdaptiveSearch:
    return AdaptiveSearch(list(members), np.random.default_rng(seed))


def arm(state: AdaptiveSearch, member: int, action: str):  # type: ignore[no-untyped-def]
    return next(a for a in state.arms if (a.member, a.action) == (member, action))


def test_a_deterministic_model_answers_once_and_a_sampling_one_again_and_again() -> None:
    state = search(SAMPLER, FIXED)
    state.observe(arm(state, 1, SAMPLE), "7", 0.9)
    assert not state.available(arm(state, 1, SAMPLE))
    state.observe(arm(state, 0, SAMPLE), "7", 0.8)
    assert state.available(arm(state, 0, SAMPLE))
    # With only the sampler left, every draw is the sampler.
    assert {(state.next_arm().member, state.next_arm().action) for _ in range(20)} == {(0, SAMPLE)}


def test_a_refiner_refines_the_best_answer_of_the_other_models_each_once() -> None:
    state = search(SAMPLER, REFINER)
    assert not state.available(arm(state, 1, REFINE))  # nothing to refine yet
    low = state.observe(arm(state, 0, SAMPLE), "1", 0.4)
    high = state.observe(arm(state, 0, SAMPLE), "7", 0.7)
    assert state.to_refine(1) == high
    refined = state.observe(arm(state, 1, REFINE), "7", 0.95, refined=high)
    # Its own answer is not offered back to it, however good; the next best of the others is.
    assert state.to_refine(1) == low and refined.member == 1
    state.observe(arm(state, 1, REFINE), "1", 0.5, refined=low)
    assert state.to_refine(1) is None and not state.available(arm(state, 1, REFINE))
    # The sampler does not refine at all.
    assert all(a.action == SAMPLE for a in state.arms if a.member == 0)


def test_a_cost_budget_leaves_out_members_that_do_not_fit() -> None:
    state = search(SearchMember(True, False, 5.0), SAMPLER)
    assert {state.next_arm(budget_left=2.0).member for _ in range(20)} == {1}
    assert state.next_arm(budget_left=0.5) is None


def test_thompson_sampling_favours_the_arm_whose_answers_score_higher() -> None:
    state = search(SAMPLER, SearchMember(True, False, 1.0), seed=3)
    for _ in range(8):
        state.observe(arm(state, 0, SAMPLE), "7", 0.95)
        state.observe(arm(state, 1, SAMPLE), "1", 0.2)
    draws = [state.next_arm().member for _ in range(200)]
    assert draws.count(0) > 190
    assert arm(state, 0, SAMPLE).mean_score == pytest.approx((1 + 8 * 0.95) / 10)


def test_a_failed_call_counts_as_a_score_of_zero() -> None:
    state = search(SAMPLER)
    state.fail(arm(state, 0, SAMPLE))
    assert (arm(state, 0, SAMPLE).alpha, arm(state, 0, SAMPLE).beta, arm(state, 0, SAMPLE).calls) == (1.0, 2.0, 1)
    assert state.candidates == []


def test_the_answer_is_the_score_weighted_vote_and_its_confidence_the_share_of_calls() -> None:
    state = search(SAMPLER)
    sampler = arm(state, 0, SAMPLE)
    state.observe(sampler, "1", 0.9)
    state.observe(sampler, "7", 0.6)
    state.observe(sampler, "7", 0.5)
    chosen, confidence = state.answer()
    assert (chosen.label, chosen.score, chosen.call) == ("7", 0.6, 1)  # 1.1 for "7" beats 0.9 for "1"
    assert confidence == pytest.approx(1.1 / 3)
    assert state.label_weights() == (["1", "7", "7"], [0.9, 0.6, 0.5])


def test_equal_totals_go_to_the_label_found_first_and_no_answer_is_an_error() -> None:
    state = search(SAMPLER)
    with pytest.raises(ValueError, match="no answer"):
        state.answer()
    state.observe(arm(state, 0, SAMPLE), "3", 0.5)
    state.observe(arm(state, 0, SAMPLE), "8", 0.5)
    assert state.answer()[0].label == "3"
    with pytest.raises(ValueError, match="outside"):
        state.observe(arm(state, 0, SAMPLE), "3", 1.5)
