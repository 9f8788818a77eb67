"""Unit tests of the digits models' numpy logic and their Triton adapters, without a Triton server."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import numpy as np
import pytest

from inferscale.models import digits
from inferscale.models.digits import MODEL_CLASSES, DigitsModel, load_model, load_split
from inferscale.models.train import accuracy, train_all, write_repository
from tests.fake_pb_utils import FakePbUtils

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
NAMES = ["digits_linear", "digits_mlp", "digits_ensemble"]


@pytest.fixture(scope="module")
def split() -> digits.Split:
    return load_split()


@pytest.fixture(scope="module")
def models(split: digits.Split) -> dict[str, DigitsModel]:
    # Training is the slow part (about 20 s), so every test of this module shares one run.
    return train_all(split)


@pytest.fixture(scope="module")
def holdout_accuracy(models: dict[str, DigitsModel], split: digits.Split) -> dict[str, float]:
    return {
        name: accuracy(model, split.x_holdout, split.y_holdout) for name, model in models.items()
    }


def test_the_registry_names_three_tiers_cheapest_first() -> None:
    assert list(MODEL_CLASSES) == NAMES
    assert [MODEL_CLASSES[name].tier for name in NAMES] == [1, 2, 3]


def test_the_split_is_deterministic_stratified_and_disjoint(split: digits.Split) -> None:
    again = load_split()
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    x_train, y_train, x_holdout, y_holdout = split
    assert x_train.shape == (1078, 64) and x_holdout.shape == (719, 64)
    assert x_train.dtype == x_holdout.dtype == np.float32
    # The bundled digits hold no duplicate images, so disjoint rows mean disjoint samples.
    assert not {row.tobytes() for row in x_train} & {row.tobytes() for row in x_holdout}
    share = np.bincount(y_holdout, minlength=10) / np.bincount(np.concatenate([y_train, y_holdout]))
    assert np.all(np.abs(share - 0.4) < 0.02)


@pytest.mark.parametrize("name", NAMES)
def test_predictions_are_probability_rows(
    models: dict[str, DigitsModel], split: digits.Split, name: str
) -> None:
    model = models[name]
    probs = model.predict_proba(split.x_holdout)
    assert probs.shape == (len(split.x_holdout), 10) and probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    single = model.predict_proba(split.x_holdout[:1])
    np.testing.assert_allclose(single, probs[:1], rtol=1e-5, atol=1e-6)
    assert model.predict_proba(np.zeros((0, 64), np.float32)).shape == (0, 10)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(64), np.zeros((1, 63)), np.zeros((1, 8, 8)), np.full((1, 64), np.nan)],
    ids=["1d", "63", "3d", "nan"],
)
def test_malformed_images_are_refused(models: dict[str, DigitsModel], bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="images"):
        models["digits_linear"].predict_proba(bad)


def test_holdout_accuracy_rises_with_tier(holdout_accuracy: dict[str, float]) -> None:
    linear, mlp, ensemble = (holdout_accuracy[name] for name in NAMES)
    assert linear < mlp < ensemble, holdout_accuracy
    # The cheapest tier must be right on most inputs but not all, or a cascade has nothing to do.
    assert 0.85 < linear < 0.985
    assert ensemble >= 0.985


def test_shifted_views_move_the_digit_and_fill_with_background() -> None:
    image = np.arange(1, 65, dtype=np.float32).reshape(1, 64)
    views = digits.shifted_views(image)
    assert views.shape == (9, 1, 64)
    np.testing.assert_array_equal(views[digits.SHIFTS.index((0, 0))], image)
    down = views[digits.SHIFTS.index((1, 0))].reshape(8, 8)
    np.testing.assert_array_equal(down[0], 0)
    np.testing.assert_array_equal(down[1:], image.reshape(8, 8)[:-1])


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip_through_npz(
    models: dict[str, DigitsModel], split: digits.Split, tmp_path: pathlib.Path, name: str
) -> None:
    (path,) = write_repository({name: models[name]}, tmp_path)
    assert path == tmp_path / name / "1" / "weights.npz"
    loaded = load_model(name, path.parent)
    assert type(loaded) is type(models[name])
    np.testing.assert_array_equal(
        loaded.predict_proba(split.x_holdout), models[name].predict_proba(split.x_holdout)
    )
    # Saving again writes the same bytes: the file carries no timestamps.
    loaded.save_npz(tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == path.read_bytes()


def test_load_model_reads_the_architecture_from_the_weights_whatever_the_model_name(
    models: dict[str, DigitsModel], tmp_path: pathlib.Path
) -> None:
    with pytest.raises(FileNotFoundError, match="inferscale.models.train"):
        load_model("digits_mlp", tmp_path)
    models["digits_linear"].save_npz(tmp_path / "weights.npz")
    assert type(load_model("digits_linear_canary", tmp_path)) is digits.LinearSoftmax
    digits.save_arrays(tmp_path / "weights.npz", {"model_class": np.array("Perceptron")})
    with pytest.raises(ValueError, match="'Perceptron'"):
        load_model("digits_odd", tmp_path)


def test_training_twice_gives_identical_weights(
    models: dict[str, DigitsModel], split: digits.Split
) -> None:
    again = {
        cls.name: cls.fit(split.x_train, split.y_train)
        for cls in (digits.LinearSoftmax, digits.MLP)
    }
    for name, model in again.items():
        for key, value in model.arrays().items():
            np.testing.assert_array_equal(
                value, models[name].arrays()[key], err_msg=f"{name} {key}"
            )
    # The ensemble's members are independent runs of the MLP trainer; retraining one stands for
    # all six at a sixth of the time.
    ensemble = models["digits_ensemble"]
    x, y = digits._augment(digits._scale(split.x_train), split.y_train)
    member = digits._fit_mlp(
        x, y, digits.MLPEnsemble.HIDDEN, digits.MLPEnsemble.EPOCHS, digits.MLPEnsemble.SEEDS[0]
    )
    for (w, b), (w0, b0) in zip(member, ensemble.members[0], strict=True):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, b0)


def _config_parameters(name: str) -> tuple[str, dict[str, str]]:
    text = (MODEL_REPOSITORY / name / "config.pbtxt").read_text()
    model_name = re.search(r'^name:\s*"([^"]+)"', text, re.MULTILINE)
    assert model_name, f"{name}/config.pbtxt has no name"
    params = dict(re.findall(r'key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text))
    return model_name.group(1), params


@pytest.mark.parametrize("name", NAMES)
def test_each_config_declares_what_the_registry_reads(name: str) -> None:
    model_name, params = _config_parameters(name)
    assert model_name == name
    # The registry's own parser is the judge of what a config must declare.
    from services.orchestrator.registry import parse_model

    registered = parse_model(name, 1, True, params)
    assert registered.routable, registered.problem
    assert params["inferscale.task"] == "digits"
    assert int(params["inferscale.tier"]) == MODEL_CLASSES[name].tier
    assert params["inferscale.answer_kind"] == "class_probabilities"
    assert params["inferscale.confidence"] == "max_probability"
    assert params["inferscale.output"] == "PROBS"


def test_configured_costs_rise_with_tier_by_at_least_ten_times() -> None:
    costs = [float(_config_parameters(name)[1]["inferscale.cost"]) for name in NAMES]
    assert costs[0] == 1 and costs[0] <= costs[1] < costs[2]
    assert costs[2] >= 10 * costs[0]


@pytest.mark.parametrize("name", NAMES)
def test_the_adapter_answers_good_requests_and_reports_bad_ones(
    models: dict[str, DigitsModel],
    split: digits.Split,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    pb_utils = FakePbUtils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    # The shared adapter binds pb_utils at import: import it afresh against this test's fake.
    monkeypatch.delitem(sys.modules, "inferscale.models.triton_adapter", raising=False)
    spec = importlib.util.spec_from_file_location(
        f"adapter_{name}", MODEL_REPOSITORY / name / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_repository({name: models[name]}, tmp_path)
    adapter = module.TritonPythonModel()
    adapter.initialize(
        {"model_name": name, "model_repository": str(tmp_path / name), "model_version": "1"}
    )

    images = split.x_holdout[:3]
    good, wrong_width, missing, sampled, two_seeds = adapter.execute(
        [
            {"IMAGE": pb_utils.Tensor("IMAGE", images)},
            {"IMAGE": pb_utils.Tensor("IMAGE", images[:, :32])},
            {},
            {"IMAGE": pb_utils.Tensor("IMAGE", images), "SEED": pb_utils.Tensor("SEED", np.array([5], np.int64))},
            {"IMAGE": pb_utils.Tensor("IMAGE", images), "SEED": pb_utils.Tensor("SEED", np.array([5, 6], np.int64))},
        ]
    )
    assert good.error is None
    (probs,) = good.output_tensors
    assert probs.name == "PROBS"
    np.testing.assert_array_equal(probs.as_numpy(), models[name].predict_proba(images))
    assert wrong_width.error is not None and "[3, 32]" in wrong_width.error.message
    assert missing.error is not None and "IMAGE" in missing.error.message
    # The request is at fault, so the caller is told INVALID_ARG, not an internal failure.
    assert wrong_width.error.code == missing.error.code == pb_utils.TritonError.INVALID_ARG
    # A seed asks for a fresh sample: the answer to that seed's noisy view of the images.
    expected = models[name].predict_proba(digits.sampled_view(images.astype(np.float32), 5))
    np.testing.assert_allclose(sampled.output_tensors[0].as_numpy(), expected, rtol=1e-6)
    assert two_seeds.error is not None and "SEED must hold one integer, not 2" in two_seeds.error.message
    assert two_seeds.error.code == pb_utils.TritonError.INVALID_ARG


def test_refine_tempers_the_earlier_answer_and_renormalises() -> None:
    own = np.array([[0.6, 0.4], [0.5, 0.5]], np.float32)
    prior = np.array([[0.1, 0.9], [0.9, 0.1]], np.float32)
    refined = digits.refine(own, prior, prior_weight=0.5)
    expected = own * np.sqrt(prior)
    np.testing.assert_allclose(refined, expected / expected.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(digits.refine(own, prior, prior_weight=0.0), own, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        digits.refine(own, prior[:1])
    with pytest.raises(ValueError, match="finite"):
        digits.refine(own, np.full((2, 2), np.nan, np.float32))


def test_a_sampled_view_is_noisy_bounded_and_the_same_for_the_same_seed(split: digits.Split) -> None:
    images = split.x_holdout[:50].astype(np.float32)
    view = digits.sampled_view(images, 7)
    assert view.shape == images.shape and view.dtype == np.float32
    assert view.min() >= 0.0 and view.max() <= 16.0
    np.testing.assert_array_equal(view, digits.sampled_view(images, 7))
    assert not np.array_equal(view, digits.sampled_view(images, 8))
    # Noise of the set scale around the image, not a different image (clipping shrinks it a little).
    assert 0.5 * digits.SAMPLE_NOISE < float(np.std(view - images)) < 1.1 * digits.SAMPLE_NOISE



def test_the_complexity_model_tells_the_cheap_tiers_mistakes_apart(split: digits.Split, tmp_path: pathlib.Path) -> None:
    from sklearn.metrics import roc_auc_score

    from inferscale.models.complexity import ComplexityModel, features

    model = ComplexityModel.fit(split.x_train, split.y_train)
    scores = model.predict(split.x_holdout)
    assert scores.shape == (len(split.x_holdout), 1) and scores.dtype == np.float32
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    assert features(split.x_holdout[:4]).shape == (4, 70)
    cheap = digits.LinearSoftmax.fit(split.x_train, split.y_train)
    wrong = cheap.predict_proba(split.x_holdout).argmax(axis=1) != split.y_holdout
    # Better than chance at finding the images the cheapest tier gets wrong (0.72 when written).
    assert roc_auc_score(wrong, scores[:, 0]) > 0.65
    # A calibrated-ish chance: its mean is near the cheap tier's error rate.
    assert abs(float(scores.mean()) - float(wrong.mean())) < 0.03
    model.save_npz(tmp_path / "weights.npz")
    np.testing.assert_array_equal(ComplexityModel.from_npz(tmp_path / "weights.npz").predict(split.x_holdout), scores)
