"""Choosing the expert for a complexity score, pure."""

from __future__ import annotations

import pytest

from services.orchestrator.escalation import choose_expert

BANDS = [(0.0, 0.1), (0.1, 0.3), (0.3, 1.0)]


@pytest.mark.parametrize(("score", "expert"), [(0.0, 0), (0.099, 0), (0.1, 1), (0.29, 1), (0.3, 2), (1.0, 2)])
def test_the_band_that_holds_the_score_answers_a_band_ending_at_one_included(score: float, expert: int) -> None:
    assert choose_expert(BANDS, score) == expert


def test_between_or_past_the_bands_the_nearest_answers_and_the_more_capable_on_a_tie() -> None:
    gappy = [(0.0, 0.25), (0.75, 0.875)]
    assert choose_expert(gappy, 0.375) == 0
    assert choose_expert(gappy, 0.625) == 1
    assert choose_expert(gappy, 0.5) == 1  # as near to both: the higher band
    assert choose_expert(gappy, 0.95) == 1
    with pytest.raises(ValueError, match="no expert"):
        choose_expert([], 0.5)
