"""Seeded, stratified train/val/test splits, as sample indices (nothing is copied or normalised).

Every source splits with these functions and only then fits its preprocessing (imputation,
vocabulary, normalisation) on the training indices, so no statistic ever sees a validation
or test sample. The same labels, fractions and seed always give the same indices.

Where the data gives its own test split (a built-in's official test images, an image
folder's ``test/``, a table's ``data.split_column`` or ``data.test_source``), that split is
used as given and validation, when not given too, is carved from the training part alone:
``val_fraction`` is then a share of the training part (Fashion-MNIST: 6,000 of the 60,000
training images). :class:`SplitInfo` records which way a split was made, for metrics.json
and the console.

Example:
    >>> parts = split_indices(torch.tensor([0, 1] * 50), seed=0, val_fraction=0.1, test_fraction=0.2)
    >>> len(parts.train), len(parts.val), len(parts.test)
    (70, 10, 20)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .rows import format_rows

__all__ = ["SplitIndices", "SplitInfo", "SPLIT_NAMES", "split_indices", "split_validation", "split_from_column", "split_rows"]

SPLIT_NAMES = ("train", "val", "test")

TestSource = Literal["seeded", "official", "fixed", "folder", "column", "file"]
_TEST_WORDS = {
    "seeded": "a seeded, stratified {test:.0%} of all samples",
    "official": "the data set's official test split",
    "fixed": "the data set's own test part",
    "folder": "the test/ folder",
    "column": "the rows marked 'test' in column '{column}'",
    "file": "{file}",
}


@dataclass(frozen=True)
class SplitInfo:
    """How a data set was split: where the test split and the validation split came from.

    Attributes:
        test: ``seeded`` (a stratified share of all samples), ``official`` (a built-in's
            official test split), ``fixed`` (a built-in's own test part), ``folder``
            (``test/``), ``column`` (``data.split_column``) or ``file`` (``data.test_source``).
        val: ``seeded`` (a share of all samples, with a seeded test split), ``carved`` (a
            stratified share of the training part) or ``given`` (``val/``, or rows marked ``val``).
        seed: The seed of whatever was drawn.
        val_fraction: The share of all samples (``seeded``) or of the training part
            (``carved``) that validation got; ``None`` when given.
        test_fraction: The share of all samples the seeded test split got; ``None`` otherwise.
        column: The split column (``column``), else ``None``.
        file: The test file (``file``), else ``None``.

    Example:
        >>> SplitInfo("official", "carved", seed=0, val_fraction=0.1).describe({"n_train": 54000, "n_val": 6000, "n_test": 10000})
        "test: the data set's official test split (10,000); validation: 10% of the training part (6,000), stratified, seed 0; train: 54,000"
    """

    test: TestSource
    val: Literal["seeded", "carved", "given"]
    seed: int
    val_fraction: float | None = None
    test_fraction: float | None = None
    column: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``dataset.split`` block of metrics.json (keys that do not apply are left out)."""
        d: dict[str, Any] = {"test": self.test, "val": self.val, "seed": self.seed}
        for key in ("val_fraction", "test_fraction", "column", "file"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    def describe(self, sizes: dict[str, int]) -> str:
        """One line for the console, with the split sizes (``DataBundle.sizes()``)."""
        test = _TEST_WORDS[self.test].format(test=self.test_fraction or 0.0, column=self.column, file=self.file)
        n_val = f"({sizes['n_val']:,})"
        if self.val == "given":
            val = f"given {n_val}"
        elif self.val == "carved":
            val = f"{self.val_fraction:.0%} of the training part {n_val}, stratified, seed {self.seed}"
        else:
            val = f"a seeded, stratified {self.val_fraction:.0%} of all samples {n_val}"
        return f"test: {test} ({sizes['n_test']:,}); validation: {val}; train: {sizes['n_train']:,}"


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
    from sklearn.model_selection import train_test_split  # on use: importing distilens.data stays cheap
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
    samples). Where the data fixes its own test part (``fixed_test``: the official test
    images of ``fashion_mnist``, the shifted test images of ``shapes_spurious``), exactly
    those samples are the test split, ``test_fraction`` does not apply, and validation is
    ``val_fraction`` of the other samples (the training part).

    Args:
        targets: (N,) int64 class indices.
        seed: Seeds the split.
        val_fraction: Fraction of all samples for validation (with ``fixed_test``: of the others).
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
            share = val_fraction
        else:
            rest, test = _stratified(index, y, test_fraction, seed)
            share = val_fraction / (1.0 - test_fraction)
        train, val = _stratified(rest, y[rest], share, seed)
    except ValueError as exc:
        raise DataError(
            f"data set '{name}' cannot be split into stratified train/val/test ({exc}); "
            "lower data.val_fraction/test_fraction or add samples"
        ) from None
    return SplitIndices(_sorted(train), _sorted(val), _sorted(test))


def split_validation(
    targets: Tensor, *, seed: int, val_fraction: float, name: str, fix: str
) -> tuple[Tensor, Tensor]:
    """Train and validation indices of a training part whose test part is given separately.

    Validation is ``val_fraction`` of the training part, stratified (an image folder with
    ``train/`` and ``test/`` but no ``val/``; rows marked only ``train``/``test``).

    Args:
        targets: (N,) int64 class indices of the training part.
        seed: Seeds the split.
        val_fraction: Fraction of the training part for validation.
        name: Where the training part comes from, for messages.
        fix: What the user can do when it cannot be split, for messages.

    Returns:
        ``(train, val)``, (N_split,) int64 indices into ``targets``, sorted.

    Raises:
        DataError: too few samples of a class to stratify.
    """
    try:
        train, val = _stratified(
            np.arange(targets.shape[0]), targets.numpy(), val_fraction, seed
        )
    except ValueError as exc:
        raise DataError(f"'{name}' cannot give a stratified validation split ({exc}); {fix}") from None
    return _sorted(train), _sorted(val)


def split_from_column(
    values: Sequence[str], targets: Tensor, *, seed: int, val_fraction: float, name: str, column: str,
    row_numbers: Sequence[int], class_names: Sequence[str] | None = None,
) -> SplitIndices:
    """The splits a column names, row by row: ``train``, ``val`` or ``test`` (any case, spaces trimmed).

    Rows marked ``test`` are the test split and rows marked ``val`` the validation split;
    without any ``val`` row, validation is ``val_fraction`` of the ``train`` rows
    (stratified, seeded).

    Args:
        values: The column's value in every row.
        targets: (N,) int64 class indices.
        seed: Seeds the validation split when it is carved.
        val_fraction: Fraction of the training rows for validation, when none is marked.
        name: The file, for messages.
        column: The column's name, for messages.
        row_numbers: The file's row (or line) number of every row, for messages.
        class_names: The classes, for messages (default: their indices).

    Raises:
        DataError: a value other than train/val/test (the rows are named), no ``train`` or
            no ``test`` row, a class without ``train`` rows, or too few training rows of a
            class to carve validation.

    Example:
        >>> split_from_column(["train"] * 8 + ["test"] * 2, torch.tensor([0, 1] * 5), seed=0, val_fraction=0.25,
        ...                   name="t.csv", column="split", row_numbers=range(2, 12)).test.tolist()
        [8, 9]
    """
    marks = np.array([str(v).strip().lower() for v in values])
    bad = [n for m, n in zip(marks, row_numbers) if m not in SPLIT_NAMES]
    if bad:
        shown = sorted({str(values[i]).strip() for i, m in enumerate(marks) if m not in SPLIT_NAMES})[:3]
        raise DataError(
            f"'{name}': column '{column}' (data.split_column) must say train, val or test, but rows "
            f"{format_rows(bad)} say {', '.join(repr(v) for v in shown)}"
        )
    for needed in ("train", "test"):
        if not (marks == needed).any():
            raise DataError(f"'{name}': no row has '{needed}' in column '{column}' (data.split_column); mark some rows {needed}")
    index = np.arange(marks.shape[0])
    train, test = index[marks == "train"], index[marks == "test"]
    untrained = sorted(set(targets.tolist()) - set(targets[torch.from_numpy(train)].tolist()))
    if untrained:
        label = class_names[untrained[0]] if class_names is not None else untrained[0]
        raise DataError(f"'{name}': class '{label}' has no row marked train in column '{column}' (data.split_column); "
                        "every class needs training rows")
    if (marks == "val").any():
        return SplitIndices(_sorted(train), _sorted(index[marks == "val"]), _sorted(test))
    tr, va = split_validation(
        targets[torch.from_numpy(train)], seed=seed, val_fraction=val_fraction, name=f"{name}: the '{column}' = train rows",
        fix="mark some rows val, lower data.val_fraction or add rows",
    )
    return SplitIndices(_sorted(train[tr.numpy()]), _sorted(train[va.numpy()]), _sorted(test))


def split_rows(
    targets: Tensor, *, seed: int, val_fraction: float, test_fraction: float, name: str,
    split_values: Sequence[str] | None = None, column: str | None = None, row_numbers: Sequence[int] | None = None,
    test_rows: Tensor | None = None, test_file: str | None = None, class_names: Sequence[str] | None = None,
) -> tuple[SplitIndices, SplitInfo]:
    """The splits of a table's rows: from a split column, with a separate test file, or seeded.

    Args:
        targets: (N,) int64 class indices of every row (a test file's rows last).
        seed, val_fraction, test_fraction: As in :func:`split_indices`; ``val_fraction`` is
            a share of the training rows when the test split is given.
        name: The file, for messages.
        split_values, column, row_numbers: ``data.split_column``'s value in every row, its
            name and the rows' numbers (:func:`split_from_column`).
        test_rows: (N,) bool, the rows read from ``test_file`` (``data.test_source``).
        test_file: The test file, for the record.
        class_names: The classes, for messages.

    Returns:
        The indices and how they were made.
    """
    if split_values is not None:
        assert column is not None and row_numbers is not None
        parts = split_from_column(split_values, targets, seed=seed, val_fraction=val_fraction, name=name, column=column,
                                  row_numbers=row_numbers, class_names=class_names)
        given = any(str(v).strip().lower() == "val" for v in split_values)
        info = SplitInfo("column", "given" if given else "carved", seed, None if given else val_fraction, column=column)
        return parts, info
    if test_rows is not None:
        parts = split_indices(targets, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                              fixed_test=test_rows, name=name)
        return parts, SplitInfo("file", "carved", seed, val_fraction, file=test_file)
    parts = split_indices(targets, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, name=name)
    return parts, SplitInfo("seeded", "seeded", seed, val_fraction, test_fraction)
