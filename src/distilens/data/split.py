"""Seeded, stratified train/val/test splits, as sample indices (nothing is copied or normalised).

Every source splits with these functions and only then fits its preprocessing (imputation,
vocabulary, normalisation) on the training indices, so no statistic ever sees a validation
or test sample. The same labels, fractions and seed always give the same indices.

Example:
    >>> parts = split_indices(torch.tensor([0, 1] * 50), seed=0, val_fraction=0.1, test_fraction=0.2)
    >>> len(parts.train), len(parts.val), len(parts.test)
    (70, 10, 20)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from ..errors import DataError

__all__ = ["SplitIndices", "SPLIT_NAMES", "split_indices", "split_validation"]

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitIndices:
    """Sample indices of the three splits: (N_split,) int64 tensors, each sorted ascending."""

    train: Tensor
    val: Tensor
    test: Tensor

    def items(self) -> Iterator[tuple[str, Tensor]]:
        """``("train", idx), ("val", idx), ("test", idx)``."""
        return iter((name, getattr(self, name)) for name in SPLIT_NAMES)


def _stratified(index: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``index`` cut into (rest, held out) with ``share`` held out per class; sklearn's ValueError passes."""
    rest, held = train_test_split(index, test_size=share, stratify=labels, random_state=seed)
    return rest, held


def _sorted(i: np.ndarray) -> Tensor:
    return torch.from_numpy(np.sort(i))


def split_indices(
    targets: Tensor,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    fixed_test: Tensor | None = None,
    name: str = "data",
) -> SplitIndices:
    """Stratified train/val/test indices of ``targets``, seeded.

    The test part is ``test_fraction`` of each class, then validation is
    ``val_fraction / (1 - test_fraction)`` of what is left (``val_fraction`` of all
    samples). Where the data fixes its own test part (``fixed_test``, e.g. the shifted test
    images of ``shapes_spurious``), exactly those samples are the test split, its share
    replaces ``test_fraction``, and train/val are split from the others.

    Args:
        targets: (N,) int64 class indices.
        seed: Seeds the split.
        val_fraction: Fraction of all samples for validation.
        test_fraction: Fraction of all samples for testing (ignored with ``fixed_test``).
        fixed_test: (N,) bool, the samples that form the test split, and only they.
        name: The data set's name, for messages.

    Raises:
        DataError: fewer than two classes, or too few samples of a class to stratify.

    Example:
        >>> y = torch.tensor([0, 1] * 50)
        >>> split_indices(y, seed=0, val_fraction=0.1, test_fraction=0.2).test.shape
        torch.Size([20])
    """
    y = targets.numpy()
    if (np.bincount(y) > 0).sum() < 2:
        raise DataError(f"data set '{name}' has fewer than two classes; a classifier needs two or more")
    index = np.arange(y.shape[0])
    try:
        if fixed_test is not None:
            fixed = fixed_test.numpy()
            rest, test = index[~fixed], index[fixed]
            test_fraction = fixed.mean()
        else:
            rest, test = _stratified(index, y, test_fraction, seed)
        train, val = _stratified(rest, y[rest], val_fraction / (1.0 - test_fraction), seed)
    except ValueError as exc:
        raise DataError(
            f"data set '{name}' cannot be split into stratified train/val/test ({exc}); "
            "lower data.val_fraction/test_fraction or add samples"
        ) from None
    return SplitIndices(_sorted(train), _sorted(val), _sorted(test))


def split_validation(
    targets: Tensor, *, seed: int, val_fraction: float, test_fraction: float, name: str, fix: str
) -> tuple[Tensor, Tensor]:
    """Train and validation indices of a training part whose test part is given separately.

    The validation share is ``val_fraction / (1 - test_fraction)`` of the training part, as
    in :func:`split_indices` (an image folder with ``train/`` and ``test/`` but no ``val/``).

    Args:
        targets: (N,) int64 class indices of the training part.
        seed: Seeds the split.
        val_fraction: Fraction of all samples for validation.
        test_fraction: Fraction of all samples the test part stands for.
        name: Where the training part comes from, for messages.
        fix: What the user can do when it cannot be split, for messages.

    Returns:
        ``(train, val)``, (N_split,) int64 indices into ``targets``, sorted.

    Raises:
        DataError: too few samples of a class to stratify.
    """
    try:
        train, val = _stratified(
            np.arange(targets.shape[0]), targets.numpy(), val_fraction / (1.0 - test_fraction), seed
        )
    except ValueError as exc:
        raise DataError(f"'{name}' cannot give a stratified validation split ({exc}); {fix}") from None
    return _sorted(train), _sorted(val)
