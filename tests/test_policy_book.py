"""Routing policies: shadow evaluation on new scored traffic, publication or rejection, and their storage."""

from __future__ import annotations

import pathlib

import pytest

from services.monitor.aggregates import Aggregates, ScoredModelStep, ScoredRequest
from services.monitor.policy import ScoredStep, learn_thresholds
from services.monitor.policy_book import PUBLISHED, REJECTED, RETIRED, SHADOW, PolicyBook
from services.monitor.store import MonitorStore
from tests.test_policy import TRAFFIC, request


def book_with_log() -> tuple[PolicyBook, list[tuple[int, str]]]:
    changes: list[tuple[int, str]] = []
    return PolicyBook(lambda record: changes.append((record.version, record.state))), changes


def test_a_policy_that_holds_its_target_in_shadow_is_published_and_retires_the_previous_one() -> None:
    book, changes = book_with_log()
    learned = learn_thresholds(TRAFFIC)
    first = book.propose("digits", learned, [1, 2], min_shadow_requests=3, now_ms=1)
    assert first.state == SHADOW and book.published("digits") is None
    for _ in range(3):
        book.observe("digits", request((0.99, True), (0.99, True)))
    assert first.state == PUBLISHED and book.published("digits") is first
    assert (first.shadow_requests, first.shadow_accuracy) == (3, 1.0)
    second = book.propose("digits", learned, [1, 2], min_shadow_requests=1, now_ms=2)
    assert second.version == 2 and book.published("digits") is first  # still in shadow
    book.observe("digits", request((0.99, True), (0.99, True)))
    assert (first.state, second.state) == (RETIRED, PUBLISHED)
    assert (2, PUBLISHED) in changes and (1, RETIRED) in changes


def test_a_policy_that_misses_its_target_in_shadow_is_rejected_and_never_applied() -> None:
    book, _ = book_with_log()
    policy = book.propose("digits", learn_thresholds(TRAFFIC), [1, 2], min_shadow_requests=2, now_ms=1)
    # The cheap tier is sure but wrong on live traffic now: the policy accepts its mistakes.
    for _ in range(2):
        book.observe("digits", request((0.999, False), (0.99, True)))
    assert policy.state == REJECTED and "missed the target" in policy.reason
    assert book.published("digits") is None and book.shadow("digits") is None


def test_only_complete_requests_of_the_policys_task_count_and_a_newer_proposal_replaces_the_shadow() -> None:
    book, _ = book_with_log()
    learned = learn_thresholds(TRAFFIC)
    first = book.propose("digits", learned, [1, 2], min_shadow_requests=5, now_ms=1)
    book.observe("intents", request((0.99, True), (0.99, True)))
    book.observe("digits", [ScoredStep(1, 0.99, True, 1.0)])  # stopped at tier 1: cannot be replayed
    assert first.shadow_requests == 0
    second = book.propose("digits", learned, [1, 2], min_shadow_requests=5, now_ms=2)
    assert first.state == REJECTED and "replaced in shadow by v2" in first.reason
    assert book.shadow("digits") is second
    with pytest.raises(ValueError, match="at least 1"):
        book.propose("digits", learned, [1, 2], min_shadow_requests=0, now_ms=3)


def test_feedback_and_policies_survive_a_restart_of_the_store(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "monitor.sqlite3")
    store = MonitorStore(path, max_scored_requests=10)
    scored = ScoredRequest("digits", (ScoredModelStep("cheap", 1, 1, 0.93, False, 1.0), ScoredModelStep("heavy", 2, 2, 0.99, True, 22.0)))
    for _ in range(12):
        store.add_scored(scored)
    book = PolicyBook(store.save_policy)
    policy = book.propose("digits", learn_thresholds(TRAFFIC), [1, 2], min_shadow_requests=1, now_ms=5)
    book.observe("digits", request((0.99, True), (0.99, True)))
    store.close()

    reopened = MonitorStore(path, max_scored_requests=10)
    restored = reopened.scored_requests()
    assert len(restored) == 10 and restored[0] == scored
    aggregates = Aggregates()
    for item in restored:
        aggregates.add_scored(item)
    heavy = {m.model.name: m for m in aggregates.to_proto().models}["heavy"]
    assert (heavy.scored, heavy.accuracy) == (10, 1.0)
    (back,) = reopened.policies()
    assert back == policy and back.state == PUBLISHED
    assert back.weights == policy.weights and set(back.weights) == {1, 2}  # the ensemble weights too
    assert PolicyBook.restored(reopened.policies(), reopened.save_policy).published("digits").thresholds == policy.thresholds
    reopened.close()
