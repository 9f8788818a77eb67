"""The digits complexity model: how likely the cheapest tier is to get an image wrong.

A logistic regression over the image's pixels and a few shape features (ink, the rows and
columns the digit spans, its centre of mass), trained on the *out-of-fold* mistakes of
:class:`inferscale.models.digits.LinearSoftmax`: each training image is judged by a linear model
that never saw it, so the labels are the mistakes the cheap tier makes on new images. Served on
Triton as ``digits_complexity`` (``IMAGE`` in, ``COMPLEXITY`` FP32 [N, 1] in [0, 1] out); the
router puts it in a plan when a request asks for complexity analysis or for experts.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from inferscale.models.digits import LinearSoftmax, load_arrays, save_arrays, validate_images

NAME = "digits_complexity"
OUTPUT = "COMPLEXITY"
# Out-of-fold folds and the regression's inverse regularisation, fixed so training is reproducible.
_FOLDS = 5
_SEED = 7
_C = 0.05


def features(x: np.ndarray) -> np.ndarray:
    """The pixels scaled to 0..1 and six shape features, shape (N, 70), float64."""
    x = validate_images(x).astype(np.float64)
    grid = x.reshape(-1, 8, 8)
    ink = grid.sum(axis=(1, 2))
    rows = (grid.max(axis=2) > 4).sum(axis=1)
    cols = (grid.max(axis=1) > 4).sum(axis=1)
    weights = np.maximum(ink, 1e-9)
    centre_y = (grid.sum(axis=2) * np.arange(8)).sum(axis=1) / weights
    centre_x = (grid.sum(axis=1) * np.arange(8)).sum(axis=1) / weights
    strong = (x > 8).sum(axis=1)
    shape = np.stack([ink / 256.0, rows / 8.0, cols / 8.0, centre_y / 8.0, centre_x / 8.0, strong / 64.0], axis=1)
    return np.concatenate([x / 16.0, shape], axis=1)


class ComplexityModel:
    """A fitted complexity model: standardised features, then a logistic regression."""

    name: ClassVar[str] = NAME

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = float(bias)
        if not self.mean.shape == self.scale.shape == self.weight.shape:
            raise ValueError(f"bad shapes {self.mean.shape}, {self.scale.shape}, {self.weight.shape}")

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> ComplexityModel:
        """Trains on the cheap tier's out-of-fold mistakes on (x, y), deterministically."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        wrong = np.zeros(len(y), dtype=bool)
        for train, held in StratifiedKFold(_FOLDS, shuffle=True, random_state=_SEED).split(x, y):
            cheap = LinearSoftmax.fit(x[train], y[train])
            wrong[held] = cheap.predict_proba(x[held]).argmax(axis=1) != y[held]
        f = features(x)
        mean, scale = f.mean(axis=0), f.std(axis=0)
        scale[scale == 0] = 1.0
        regression = LogisticRegression(C=_C, max_iter=2000).fit((f - mean) / scale, wrong)
        return cls(mean, scale, regression.coef_[0], float(regression.intercept_[0]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The chance that the cheapest tier is wrong on each image, shape (N, 1), float32."""
        z = ((features(x) - self.mean) / self.scale) @ self.weight + self.bias
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)[:, None]

    def save_npz(self, path: str | os.PathLike[str]) -> None:
        """Writes the weights (reproducible bytes, no pickles)."""
        save_arrays(path, {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": np.array(self.bias)})

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> ComplexityModel:
        """Loads what :meth:`save_npz` wrote."""
        arrays = load_arrays(path)
        return cls(arrays["mean"], arrays["scale"], arrays["weight"], float(arrays["bias"]))
