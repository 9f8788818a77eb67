"""Three handwritten-digit classifiers of increasing cost and accuracy, for the ``digits`` task.

The data is scikit-learn's bundled ``load_digits()`` (1,797 grey 8x8 images, offline): an image is
a row of 64 float32 pixel values in 0..16, and every model answers with one row of 10 class
probabilities per image.

=================  ====  ======================================================================
name               tier  model
=================  ====  ======================================================================
digits_linear      1     softmax regression restricted to the 16 leading principal components
digits_mlp         2     one MLP (2 x 512 ReLU) trained on shift-augmented images
digits_ensemble    3     6 wider MLPs (2 x 1024 ReLU) x 9 shifted views of the image (TTA)
=================  ====  ======================================================================

scikit-learn is used to train only: the weights are stored as plain arrays in ``weights.npz`` and
inference is numpy alone, so the Triton python backend needs no pickles and no scikit-learn.
"""

from __future__ import annotations

import abc
import itertools
import os
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from typing import ClassVar, NamedTuple

import numpy as np

N_PIXELS = 64
N_CLASSES = 10
PIXEL_MAX = 16.0
WEIGHTS_FILE = "weights.npz"

# The split is part of the models' contract (the holdout accuracies are quoted against it), so its
# seed and fraction never change silently.
SPLIT_SEED = 0
HOLDOUT_FRACTION = 0.4

# Offsets (rows, columns) of the shifted copies used for augmentation and test-time augmentation:
# the bundled digits are centred only to within about a pixel.
SHIFTS: tuple[tuple[int, int], ...] = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))

# Training hyperparameters shared by the MLPs, picked by hand so that all three models train in
# well under a minute on two cores.
_BATCH = 256
_LEARNING_RATE = 2e-3
_L2 = 1e-4
_ADAM_BETA1, _ADAM_BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8

# Bounds the memory of the ensemble's 9 views x 1024 units per image for very large requests.
_CHUNK_IMAGES = 256


class Split(NamedTuple):
    """A train/holdout split of the digits data.

    Unpacks as ``x_train, y_train, x_holdout, y_holdout``.

    Attributes
    ----------
    x_train, x_holdout : np.ndarray
        float32 images, shape (N, 64), pixel values 0..16.
    y_train, y_holdout : np.ndarray
        int64 class labels 0..9, shape (N,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray


def load_split() -> Split:
    """Splits scikit-learn's bundled digits into train and holdout, the same way every time.

    Returns
    -------
    Split
        A stratified 60/40 split (1,078 train, 719 holdout images) with a fixed seed.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_holdout, y_train, y_holdout = train_test_split(
        x, y, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return Split(x_train, y_train, x_holdout, y_holdout)


def validate_images(x: np.ndarray) -> np.ndarray:
    """Checks a batch of images and returns it as C-contiguous float32.

    Parameters
    ----------
    x : np.ndarray
        Images, shape (N, 64).

    Returns
    -------
    np.ndarray
        ``x`` as float32, shape (N, 64).

    Raises
    ------
    ValueError
        If ``x`` is not 2-D with 64 columns, or holds NaN or infinity; the message says which.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != N_PIXELS:
        raise ValueError(
            f"images must have shape [N, {N_PIXELS}] (8x8 pixels, values 0..16), "
            f"got {list(x.shape)}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("images must not contain NaN or infinity")
    return x


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits.

    Parameters
    ----------
    z : np.ndarray
        Logits, shape (N, C).

    Returns
    -------
    np.ndarray
        Probabilities of the same shape and dtype; each row sums to 1.
    """
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def shifted_views(x: np.ndarray, shifts: Sequence[tuple[int, int]] = SHIFTS) -> np.ndarray:
    """Copies of each image moved by whole pixels, with zeros (background) shifted in.

    Parameters
    ----------
    x : np.ndarray
        Images, shape (N, 64).
    shifts : sequence of (int, int)
        (rows, columns) offsets, each in -1..1; positive moves the digit down or right.

    Returns
    -------
    np.ndarray
        Shape (len(shifts), N, 64): one block of N images per offset, in the order of ``shifts``.
    """
    n = x.shape[0]
    padded = np.pad(x.reshape(n, 8, 8), ((0, 0), (1, 1), (1, 1)))
    views = np.empty((len(shifts), n, 8, 8), dtype=x.dtype)
    for i, (dy, dx) in enumerate(shifts):
        views[i] = padded[:, 1 - dy : 9 - dy, 1 - dx : 9 - dx]
    return views.reshape(len(shifts), n, N_PIXELS)


# How far a sampled view strays from the image: Gaussian pixel noise, in the 0..16 pixel scale.
# (Whole-pixel shifts were tried too: the linear model, trained without them, fell to ~45%.)
SAMPLE_NOISE = 1.5


def sampled_view(x: np.ndarray, seed: int, noise: float = SAMPLE_NOISE) -> np.ndarray:
    """A random view of the images, for a fresh sample of a model's answer: Gaussian pixel noise,
    clipped to 0..16. The same seed gives the same view.

    Parameters
    ----------
    x : np.ndarray
        Images, shape (N, 64), float32.
    seed : int
        Any integer; NumPy's generator seeds from it.

    Returns
    -------
    np.ndarray
        Shape (N, 64), float32.
    """
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0.0, noise, size=x.shape), 0.0, 16.0).astype(np.float32)


def _scale(x: np.ndarray) -> np.ndarray:
    # Every model sees pixels in 0..1, the range their weights were initialised and regularised for.
    return x * np.float32(1.0 / PIXEL_MAX)


def _mlp_logits(layers: Sequence[tuple[np.ndarray, np.ndarray]], a: np.ndarray) -> np.ndarray:
    for w, b in layers[:-1]:
        a = a @ w
        a += b
        np.maximum(a, 0.0, out=a)
    w, b = layers[-1]
    return a @ w + b


def _fit_mlp(
    x: np.ndarray, y: np.ndarray, hidden: Sequence[int], epochs: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Trains a ReLU MLP with softmax cross-entropy: Adam, cosine-decayed step size, L2 penalty.

    Plain numpy rather than scikit-learn's MLPClassifier because a short, fixed epoch budget
    needs the decaying step size (worth about a point of single-model accuracy here), and
    because every random draw then comes from one seeded generator.
    """
    rng = np.random.default_rng(seed)
    sizes = [N_PIXELS, *hidden, N_CLASSES]
    # He initialisation keeps ReLU activations at a stable scale through the layers.
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        weight = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        params.append(weight.astype(np.float32))
        params.append(np.zeros(fan_out, dtype=np.float32))
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    scratch = [np.empty_like(p) for p in params]
    n_layers = len(sizes) - 1
    onehot = np.eye(N_CLASSES, dtype=np.float32)[y]
    n = x.shape[0]
    total_steps = epochs * -(-n // _BATCH)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, _BATCH):
            idx = order[start : start + _BATCH]
            activations = [x[idx]]
            for j in range(n_layers):
                a = activations[-1] @ params[2 * j]
                a += params[2 * j + 1]
                if j < n_layers - 1:
                    np.maximum(a, 0.0, out=a)
                activations.append(a)
            delta = softmax(activations[-1]) - onehot[idx]
            delta /= len(idx)
            grads: list[np.ndarray] = [np.empty(0)] * len(params)
            for j in reversed(range(n_layers)):
                grads[2 * j] = activations[j].T @ delta
                grads[2 * j] += _L2 * params[2 * j]
                grads[2 * j + 1] = delta.sum(axis=0)
                if j > 0:
                    delta = delta @ params[2 * j].T
                    delta *= activations[j] > 0
            step += 1
            rate = _LEARNING_RATE * 0.5 * (1.0 + np.cos(np.pi * (step - 1) / total_steps))
            for p, g, m, v, tmp in zip(params, grads, first, second, scratch, strict=True):
                _adam_update(p, g, m, v, tmp, step, rate)
    return [(params[2 * j], params[2 * j + 1]) for j in range(n_layers)]


def _adam_update(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    tmp: np.ndarray,
    step: int,
    rate: float,
) -> None:
    # In place throughout: temporaries the size of a 1024 x 1024 layer, made and freed at every
    # step, otherwise cost as much time in page faults as the matrix products.
    m *= _ADAM_BETA1
    np.multiply(g, 1.0 - _ADAM_BETA1, out=tmp)
    m += tmp
    v *= _ADAM_BETA2
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - _ADAM_BETA2
    v += tmp
    np.multiply(v, 1.0 / (1.0 - _ADAM_BETA2**step), out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp += _ADAM_EPS
    np.divide(m, tmp, out=tmp)
    tmp *= rate / (1.0 - _ADAM_BETA1**step)
    p -= tmp


def _augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    views = shifted_views(x)
    return views.reshape(-1, N_PIXELS), np.tile(y, len(SHIFTS))


def save_arrays(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Writes arrays as an uncompressed ``.npz`` whose bytes depend on the arrays only.

    ``np.savez`` stamps each member with the current time; fixed timestamps make retraining
    byte-for-byte reproducible, so a changed weights file always means changed weights.

    Parameters
    ----------
    path : path-like
        Destination file; its parent directory must exist.
    arrays : mapping of str to np.ndarray
        Arrays by name; numeric or unicode dtypes only, so loading needs no pickle.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arrays[name]), allow_pickle=False)


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file, refusing pickled objects.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_arrays` (or ``np.savez``).

    Returns
    -------
    dict of str to np.ndarray
    """
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


class DigitsModel(abc.ABC):
    """A trained digit classifier: numpy inference over weights kept in a ``.npz`` file.

    Attributes
    ----------
    name : str
        The Triton model name, also the key in :data:`MODEL_CLASSES`.
    tier : int
        1 for the cheapest and least accurate; higher is costlier and more accurate.
    """

    name: ClassVar[str]
    tier: ClassVar[int]

    @classmethod
    @abc.abstractmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> DigitsModel:
        """Trains a model, deterministically for given data.

        Parameters
        ----------
        x : np.ndarray
            float32 images, shape (N, 64), pixel values 0..16.
        y : np.ndarray
            Labels 0..9, shape (N,); every class must occur.

        Returns
        -------
        DigitsModel
        """

    @abc.abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """The weights by name, as :meth:`save_npz` stores them.

        Returns
        -------
        dict of str to np.ndarray
        """

    @classmethod
    @abc.abstractmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> DigitsModel:
        """Rebuilds a model from the arrays :meth:`arrays` returned.

        Parameters
        ----------
        arrays : mapping of str to np.ndarray

        Returns
        -------
        DigitsModel
        """

    @abc.abstractmethod
    def _proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for validated, non-empty float32 images of shape (N, 64)."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of images.

        Parameters
        ----------
        x : np.ndarray
            Images, shape (N, 64), pixel values 0..16 (float32 preferred).

        Returns
        -------
        np.ndarray
            float32, shape (N, 10); row i holds P(digit = k | image i) for k = 0..9 and sums to 1.

        Raises
        ------
        ValueError
            If ``x`` does not have shape (N, 64) or is not finite.
        """
        x = validate_images(x)
        if x.shape[0] == 0:
            return np.zeros((0, N_CLASSES), dtype=np.float32)
        return np.ascontiguousarray(self._proba(x), dtype=np.float32)

    def save_npz(self, path: str | os.PathLike[str]) -> None:
        """Writes the weights to ``path`` (reproducible bytes, no pickles).

        Parameters
        ----------
        path : path-like
            Destination ``.npz`` file; its parent directory must exist.
        """
        arrays = dict(self.arrays())
        arrays["model_class"] = np.array(type(self).__name__)
        save_arrays(path, arrays)

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> DigitsModel:
        """Loads a model that :meth:`save_npz` wrote.

        Parameters
        ----------
        path : path-like
            A ``weights.npz`` file.

        Returns
        -------
        DigitsModel
            An instance of ``cls``.

        Raises
        ------
        ValueError
            If the file holds the weights of a different model class.
        """
        arrays = load_arrays(path)
        stored = str(arrays.pop("model_class", ""))
        if stored != cls.__name__:
            raise ValueError(
                f"{path} holds weights of {stored or 'an unknown model'}, not {cls.__name__}"
            )
        return cls.from_arrays(arrays)


class LinearSoftmax(DigitsModel):
    """Tier 1: multinomial logistic regression on the 16 leading principal components.

    The 16-component limit is deliberate: the cheap tier should be right on most images (about
    95 %) but not all, so that a cascade has something to escalate, and its maximum probability
    is low on most of its mistakes, which is what the cascade reads. Both linear steps are folded
    into one 64 x 10 matrix, so inference is a matrix product and a softmax.

    Parameters
    ----------
    weight : np.ndarray
        float32, shape (64, 10), applied to pixels scaled to 0..1.
    bias : np.ndarray
        float32, shape (10,).
    """

    name = "digits_linear"
    tier = 1
    N_COMPONENTS = 16

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        if self.weight.shape != (N_PIXELS, N_CLASSES) or self.bias.shape != (N_CLASSES,):
            raise ValueError(f"bad shapes {self.weight.shape}, {self.bias.shape}")

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> LinearSoftmax:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression

        xs = _scale(validate_images(x)).astype(np.float64)
        # Full SVD, not randomized, so the components do not depend on a random state.
        pca = PCA(n_components=cls.N_COMPONENTS, svd_solver="full").fit(xs)
        clf = LogisticRegression(C=1.0, max_iter=5000).fit(pca.transform(xs), y)
        # softmax((x - mean) @ components.T @ coef.T + intercept) as one affine map of x.
        weight = pca.components_.T @ clf.coef_.T
        bias = clf.intercept_ - pca.mean_ @ weight
        return cls(weight, bias)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LinearSoftmax:
        return cls(arrays["weight"], arrays["bias"])

    def _proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(_scale(x) @ self.weight + self.bias)


class MLP(DigitsModel):
    """Tier 2: one multilayer perceptron, 2 hidden layers of 512 ReLU units.

    Trained on the training images and their 8 one-pixel shifts, so that it does not depend on
    exact centring; one forward pass per image.

    Parameters
    ----------
    layers : sequence of (np.ndarray, np.ndarray)
        (weight, bias) per layer, float32, the first weight of shape (64, H1), the last of
        shape (H_last, 10); ReLU between layers, softmax after the last.
    """

    name = "digits_mlp"
    tier = 2
    HIDDEN = (512, 512)
    EPOCHS = 8
    SEED = 0

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        self.layers = _checked_layers(layers)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> MLP:
        xa, ya = _augment(_scale(validate_images(x)), y)
        return cls(_fit_mlp(xa, ya, cls.HIDDEN, cls.EPOCHS, cls.SEED))

    def arrays(self) -> dict[str, np.ndarray]:
        return _layer_arrays(self.layers)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MLP:
        return cls(_layers_from_arrays(arrays))

    def _proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(_mlp_logits(self.layers, _scale(x)))


class MLPEnsemble(DigitsModel):
    """Tier 3: 6 MLPs (2 hidden layers of 1024 ReLU units) x 9 shifted views of each image.

    Each member is trained like :class:`MLP` from a different seed; at inference every member
    classifies the image and its 8 one-pixel shifts (test-time augmentation) and the 54
    probability rows are averaged. About 60 M multiply-adds per image: the costly, most
    accurate tier.

    Parameters
    ----------
    members : sequence of sequences of (np.ndarray, np.ndarray)
        Per member, its layers as for :class:`MLP`.
    """

    name = "digits_ensemble"
    tier = 3
    HIDDEN = (1024, 1024)
    EPOCHS = 6
    SEEDS = (1, 2, 3, 4, 5, 6)

    def __init__(self, members: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = [_checked_layers(layers) for layers in members]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> MLPEnsemble:
        xa, ya = _augment(_scale(validate_images(x)), y)
        return cls([_fit_mlp(xa, ya, cls.HIDDEN, cls.EPOCHS, seed) for seed in cls.SEEDS])

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for i, layers in enumerate(self.members):
            arrays.update({f"m{i}_{k}": v for k, v in _layer_arrays(layers).items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MLPEnsemble:
        n_members = len({name.split("_", 1)[0] for name in arrays})
        members = []
        for i in range(n_members):
            prefix = f"m{i}_"
            members.append(
                _layers_from_arrays(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            )
        return cls(members)

    def _proba(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((x.shape[0], N_CLASSES), dtype=np.float32)
        for start in range(0, x.shape[0], _CHUNK_IMAGES):
            chunk = x[start : start + _CHUNK_IMAGES]
            n = chunk.shape[0]
            # All views of the chunk go through each member as one matrix, the cheap way to run
            # 9 forward passes.
            views = _scale(shifted_views(chunk)).reshape(-1, N_PIXELS)
            total = np.zeros((n, N_CLASSES), dtype=np.float32)
            for layers in self.members:
                proba = softmax(_mlp_logits(layers, views))
                total += proba.reshape(len(SHIFTS), n, N_CLASSES).sum(axis=0)
            out[start : start + n] = total / total.sum(axis=1, keepdims=True)
        return out


def _checked_layers(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    checked = [
        (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
        for w, b in layers
    ]
    width = N_PIXELS
    for w, b in checked:
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise ValueError(f"layer shapes {w.shape}, {b.shape} do not follow width {width}")
        width = w.shape[1]
    if width != N_CLASSES:
        raise ValueError(f"the last layer has {width} outputs, not {N_CLASSES}")
    return checked


def _layer_arrays(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    arrays = {}
    for j, (w, b) in enumerate(layers):
        arrays[f"w{j}"] = w
        arrays[f"b{j}"] = b
    return arrays


def _layers_from_arrays(arrays: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    n_layers = sum(1 for name in arrays if name.startswith("w"))
    if n_layers == 0:
        raise ValueError("no layers in the weights")
    return [(arrays[f"w{j}"], arrays[f"b{j}"]) for j in range(n_layers)]


MODEL_CLASSES: dict[str, type[DigitsModel]] = {
    cls.name: cls for cls in (LinearSoftmax, MLP, MLPEnsemble)
}


def load_model(name: str, version_dir: str | os.PathLike[str]) -> DigitsModel:
    """Loads a model's weights from its Triton version directory.

    The architecture is read from the weights file itself, so a model copied or renamed in the
    repository (a canary, a new version under another name) loads without code changes.

    Parameters
    ----------
    name : str
        The Triton model name, used in error messages.
    version_dir : path-like
        The directory holding ``weights.npz``, e.g. ``model_repository/digits_linear/1``.

    Returns
    -------
    DigitsModel

    Raises
    ------
    FileNotFoundError
        If the weights have not been trained (``python -m inferscale.models.train``).
    ValueError
        If the weights file names no known architecture.
    """
    path = pathlib.Path(version_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; train it with `python -m inferscale.models.train`"
        )
    stored = str(load_arrays(path).get("model_class", ""))
    by_architecture = {cls.__name__: cls for cls in MODEL_CLASSES.values()}
    if stored not in by_architecture:
        raise ValueError(
            f"model {name!r}: {path} holds architecture {stored!r}, not one of {', '.join(by_architecture)}"
        )
    return by_architecture[stored].from_npz(path)


# How much a refining model trusts the earlier model's answer it receives: the earlier models
# are the weaker ones, so their evidence is tempered rather than taken at full weight.
PRIOR_WEIGHT = 0.5


def refine(own: np.ndarray, prior: np.ndarray, prior_weight: float = PRIOR_WEIGHT) -> np.ndarray:
    """Combines a model's probabilities with an earlier model's answer as tempered evidence.

    Returns ``own * prior ** prior_weight``, renormalised per row (a product of experts in which
    the earlier model's vote counts less). Both arrays are [N, 10] probabilities.

    Raises
    ------
    ValueError
        If the shapes differ or ``prior`` is not a valid probability array.
    """
    own = np.asarray(own, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if own.shape != prior.shape:
        raise ValueError(f"the earlier answer has shape {list(prior.shape)}, not {list(own.shape)}")
    if not np.isfinite(prior).all() or (prior < 0).any():
        raise ValueError("the earlier answer must hold finite, non-negative probabilities")
    # A floor keeps one overconfident zero in the prior from vetoing a class outright.
    combined = own * np.power(np.maximum(prior, 1e-6), prior_weight)
    return (combined / combined.sum(axis=1, keepdims=True)).astype(np.float32)
