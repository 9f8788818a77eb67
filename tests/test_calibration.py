"""The monitor's pure calibration: reliability bins, expected calibration error and temperature fitting."""

from __future__ import annotations

import numpy as np
import pytest

from services.monitor.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def synthetic(true_probability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.random(true_probability.size) < true_probability


def test_bins_summarise_count_confidence_and_accuracy() -> None:
    bins = reliability_bins([0.95, 0.91, 0.55, 1.0], [True, False, True, True], bins=10)
    assert [(b.low, b.count) for b in bins] == [(0.5, 1), (pytest.approx(0.9), 3)]
    assert bins[1].accuracy == pytest.approx(2 / 3)
    assert bins[1].mean_confidence == pytest.approx((0.95 + 0.91 + 1.0) / 3)


def test_a_calibrated_model_has_a_small_error_and_a_temperature_near_one() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20_000)
    right = synthetic(confidence, rng)
    assert expected_calibration_error(confidence, right) < 0.02
    assert fit_temperature(confidence, right) == pytest.approx(1.0, abs=0.1)


def test_an_overconfident_model_gets_a_temperature_above_one_that_shrinks_its_error() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.5, 0.95, 20_000)
    right = synthetic(truth, rng)
    claimed = calibrate(truth, 0.5)  # sharper than the truth: overconfident
    before = expected_calibration_error(claimed, right)
    temperature = fit_temperature(claimed, right)
    assert temperature == pytest.approx(2.0, rel=0.15)
    assert expected_calibration_error(calibrate(claimed, temperature), right) < before / 3


def test_nothing_to_fit_gives_temperature_one() -> None:
    assert fit_temperature([], []) == 1.0
    assert fit_temperature([0.9, 0.8], [True, True]) == 1.0
    assert expected_calibration_error([], []) == 0.0
