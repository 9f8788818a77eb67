"""Trains the digits models reproducibly and writes their weights into the Triton model repository.

    python -m inferscale.models.train [--repository model_repository]

writes ``<repository>/<name>/1/weights.npz`` for every model of
:data:`inferscale.models.digits.MODEL_CLASSES` and prints each one's holdout accuracy, then the
task's complexity model (:mod:`inferscale.models.complexity`) and its holdout AUC at telling
the cheapest tier's mistakes. The split,
the seeds and the epoch budgets are fixed, so on one machine a rerun writes the same bytes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from inferscale.models.complexity import ComplexityModel
from inferscale.models.digits import MODEL_CLASSES, WEIGHTS_FILE, DigitsModel, LinearSoftmax, Split, load_split

DEFAULT_REPOSITORY = pathlib.Path(__file__).resolve().parents[2] / "model_repository"
MODEL_VERSION = "1"


def accuracy(model: DigitsModel, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of images whose most probable class is the label.

    Parameters
    ----------
    model : DigitsModel
    x : np.ndarray
        Images, shape (N, 64).
    y : np.ndarray
        Labels, shape (N,).

    Returns
    -------
    float
    """
    return float(np.mean(model.predict_proba(x).argmax(axis=1) == y))


def train_all(split: Split | None = None) -> dict[str, DigitsModel]:
    """Trains every digits model on the train part of a split.

    Parameters
    ----------
    split : Split, optional
        Defaults to :func:`inferscale.models.digits.load_split`.

    Returns
    -------
    dict of str to DigitsModel
        By model name, cheapest tier first.
    """
    split = split or load_split()
    classes = sorted(MODEL_CLASSES.values(), key=lambda cls: cls.tier)
    return {cls.name: cls.fit(split.x_train, split.y_train) for cls in classes}


def write_repository(
    models: dict[str, DigitsModel], repository: pathlib.Path
) -> list[pathlib.Path]:
    """Writes each model's weights into its version directory of a Triton model repository.

    Parameters
    ----------
    models : dict of str to DigitsModel
        By model name, which is also the model's folder in the repository.
    repository : pathlib.Path
        The model repository root.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    written = []
    for name, model in models.items():
        version_dir = repository / name / MODEL_VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        path = version_dir / WEIGHTS_FILE
        model.save_npz(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; see the module docstring.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repository",
        type=pathlib.Path,
        default=DEFAULT_REPOSITORY,
        help="Triton model repository root (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    split = load_split()
    print(f"digits: {len(split.y_train)} train, {len(split.y_holdout)} holdout images")
    print(f"{'model':<18}{'tier':>5}{'holdout acc':>13}{'train s':>9}  weights")
    for cls in sorted(MODEL_CLASSES.values(), key=lambda cls: cls.tier):
        started = time.perf_counter()
        model = cls.fit(split.x_train, split.y_train)
        seconds = time.perf_counter() - started
        (path,) = write_repository({cls.name: model}, args.repository)
        acc = accuracy(model, split.x_holdout, split.y_holdout)
        print(f"{cls.name:<18}{cls.tier:>5}{acc:>13.4f}{seconds:>9.1f}  {path}")
    started = time.perf_counter()
    complexity = ComplexityModel.fit(split.x_train, split.y_train)
    seconds = time.perf_counter() - started
    path = args.repository / ComplexityModel.name / MODEL_VERSION / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    complexity.save_npz(path)
    cheap = LinearSoftmax.fit(split.x_train, split.y_train)
    wrong = cheap.predict_proba(split.x_holdout).argmax(axis=1) != split.y_holdout
    auc = float(roc_auc_score(wrong, complexity.predict(split.x_holdout)[:, 0]))
    print(f"{ComplexityModel.name:<18}{'-':>5}{'AUC ' + format(auc, '.4f'):>13}{seconds:>9.1f}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
