"""Small, seeded classification data sets that train in seconds on a laptop CPU.

``digits()`` is scikit-learn's bundled 8x8 handwritten digits (no download); ``spirals()`` is
a synthetic 2-D problem that needs depth to solve; ``breast_cancer()`` is scikit-learn's
bundled Wisconsin diagnostic table (30 measurements, two classes). All return a
:class:`Dataset` of torch tensors: float32 inputs standardised with *training* statistics (so
the test split leaks nothing) and int64 class labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dataset", "breast_cancer", "digits", "spirals"]


@dataclass(frozen=True)
class Dataset:
    """A train/test split ready for :class:`gradwidget.Run`.

    Attributes
    ----------
    name : str
        Short name shown in tables and titles.
    x_train, y_train : torch.Tensor
        Training inputs ``(N, ...)`` and targets ``(N,)`` or ``(N, ...)``.
    x_test, y_test : torch.Tensor or None
        Held-out split used for ``test_accuracy``; ``None`` (or empty) when there is none.
    n_classes : int or None
        Number of classes for classification, ``None`` for regression.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    n_classes: int | None

    @property
    def has_test(self) -> bool:
        """Whether there is a non-empty test split."""
        return self.x_test is not None and self.y_test is not None and len(self.x_test) > 0

    def __repr__(self) -> str:
        n_test = len(self.x_test) if self.has_test else 0
        shape = tuple(self.x_train.shape[1:])
        return (
            f"Dataset({self.name!r}: {len(self.x_train)} train / {n_test} test, "
            f"inputs {shape}, classes={self.n_classes})"
        )


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Scikit-learn's 1,797 handwritten 8x8 digits, flattened to 64 features.

    Parameters
    ----------
    test_fraction : float
        Share of each class held out for testing (the split is stratified).
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        ``x`` float32 ``(N, 64)`` standardised per pixel with training statistics,
        ``y`` int64 labels 0-9. Reshape to ``(N, 1, 8, 8)`` for images
        (:func:`gradwidget.models.small_cnn` accepts either).

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    x, y = _sklearn("digits")
    return _split("digits", x, y, n_classes=10, test_fraction=test_fraction, seed=seed)


def breast_cancer(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """Scikit-learn's 569 Wisconsin breast-cancer cases: 30 measurements, benign or malignant.

    Tabular data whose features span four orders of magnitude before standardising, a
    third kind of problem beside images and 2-D points.

    Parameters
    ----------
    test_fraction : float
        Share of each class held out for testing (the split is stratified).
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        ``x`` float32 ``(N, 30)`` standardised with training statistics, ``y`` int64 labels
        (0 malignant, 1 benign).

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    x, y = _sklearn("breast_cancer")
    return _split("breast_cancer", x, y, n_classes=2, test_fraction=test_fraction, seed=seed)


def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (float32) and labels (int64) of a data set bundled with scikit-learn."""
    try:
        import sklearn.datasets as bundled
    except ImportError as exc:  # optional extra: the core needs only torch and numpy
        raise ImportError(
            f"{name}() needs scikit-learn, which bundles the data set: "
            "pip install scikit-learn (or pip install 'gradwidget[data]')"
        ) from exc
    bunch = getattr(bundled, f"load_{name}")()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def spirals(
    n: int = 1500, classes: int = 3, noise: float = 0.2, seed: int = 0, test_fraction: float = 0.25
) -> Dataset:
    """Interleaved 2-D spiral arms, one per class.

    Parameters
    ----------
    n : int
        Total number of points (split as evenly as possible between the classes).
    classes : int
        Number of arms (classes), at least 2.
    noise : float
        Standard deviation of the angular jitter, in radians.
    seed : int
        Seed of the points and of the split.
    test_fraction : float
        Share of each class held out for testing.

    Returns
    -------
    Dataset
        ``x`` float32 ``(N, 2)`` standardised, ``y`` int64 labels ``0 .. classes-1``.
    """
    if classes < 2 or n < 2 * classes:
        raise ValueError(f"need classes >= 2 and n >= 2 * classes, got n={n}, classes={classes}")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    radius = rng.uniform(0.05, 1.0, n)
    # Each arm winds about 1.3 turns, so a straight line cannot separate them.
    angle = 2 * np.pi * labels / classes + 8.0 * radius + rng.normal(0.0, noise, n)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    return _split("spirals", x, labels.astype(np.int64), classes, test_fraction, seed)


def _split(
    name: str, x: np.ndarray, y: np.ndarray, n_classes: int, test_fraction: float, seed: int
) -> Dataset:
    """Stratified seeded split, then standardise both parts with the training statistics."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    test = _stratified_test_indices(y, test_fraction, np.random.default_rng(seed))
    is_test = np.zeros(len(y), bool)
    is_test[test] = True
    x_train, x_test = x[~is_test], x[is_test]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels (the digits' borders) stay 0 instead of NaN
    return Dataset(
        name=name,
        x_train=torch.from_numpy((x_train - mean) / std),
        y_train=torch.from_numpy(y[~is_test]),
        x_test=torch.from_numpy((x_test - mean) / std),
        y_test=torch.from_numpy(y[is_test]),
        n_classes=n_classes,
    )


def _stratified_test_indices(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``round(fraction * count)`` random samples of each class, sorted."""
    picks = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        picks.append(members[: round(fraction * len(members))])
    return np.sort(np.concatenate(picks))
