"""Splits by indices: stratified per class, a function of the seed alone, a fixed test part kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilens.data import DATASETS, load_dataset, split_indices, split_validation
from distilens.errors import DataError


def _labels(counts: list[int], seed: int = 0) -> torch.Tensor:
    """Shuffled labels with ``counts[c]`` samples of class c."""
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return torch.from_numpy(np.random.default_rng(seed).permutation(y).astype(np.int64))


def test_a_partition_of_sorted_indices_with_the_asked_sizes() -> None:
    parts = split_indices(_labels([50, 50]), seed=0, val_fraction=0.1, test_fraction=0.2)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (70, 10, 20)
    joined = torch.cat([i for _, i in parts.items()])
    assert sorted(joined.tolist()) == list(range(100))  # disjoint and complete
    for _, i in parts.items():
        assert i.dtype == torch.int64 and torch.equal(i, i.sort().values)
    assert [name for name, _ in parts.items()] == ["train", "val", "test"]


def test_every_split_keeps_the_class_proportions() -> None:
    y = _labels([200, 100, 60, 40])  # 50%, 25%, 15%, 10%
    parts = split_indices(y, seed=3, val_fraction=0.1, test_fraction=0.2)
    for name, i in parts.items():
        share = torch.bincount(y[i], minlength=4).double() / len(i)
        # stratified: each split's class shares are those of the whole, to one sample
        assert torch.allclose(share, torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64), atol=1.0 / len(i) + 1e-9), name


def test_the_seed_alone_decides() -> None:
    y = _labels([30, 30, 30])
    a = split_indices(y, seed=7, val_fraction=0.2, test_fraction=0.2)
    b = split_indices(y.clone(), seed=7, val_fraction=0.2, test_fraction=0.2)
    c = split_indices(y, seed=8, val_fraction=0.2, test_fraction=0.2)
    assert all(torch.equal(i, j) for (_, i), (_, j) in zip(a.items(), b.items()))
    assert not torch.equal(a.test, c.test)


def test_a_fixed_test_part_is_the_test_split_and_train_val_split_the_rest() -> None:
    y = _labels([40, 40])
    fixed = torch.zeros(80, dtype=torch.bool)
    fixed[::4] = True  # 20 samples, a quarter
    parts = split_indices(y, seed=0, val_fraction=0.15, test_fraction=0.5, fixed_test=fixed)
    assert torch.equal(parts.test, fixed.nonzero().flatten())  # exactly those, whatever test_fraction says
    rest = torch.cat([parts.train, parts.val])
    assert not fixed[rest].any() and len(rest) == 60
    # validation is val_fraction of the training part (the 60 others), as Fashion-MNIST's 6k of 60k
    assert len(parts.val) == 9


def test_shapes_spurious_puts_its_own_test_part_in_the_test_split() -> None:
    raw = DATASETS.get("shapes_spurious")(0)
    bundle = load_dataset("builtin:shapes_spurious", seed=0)
    assert len(bundle.test) == int(raw.test_only.sum())
    assert torch.equal(bundle.test.targets, raw.targets[raw.test_only])


def test_validation_split_of_a_given_training_part() -> None:
    y = _labels([24, 16])
    tr, va = split_validation(y, seed=0, val_fraction=0.125, name="pets/train", fix="add images")
    assert sorted(torch.cat([tr, va]).tolist()) == list(range(40)) and len(va) == 5  # 0.125 of 40
    assert torch.bincount(y[va]).tolist() == [3, 2]
    again = split_validation(y, seed=0, val_fraction=0.125, name="pets/train", fix="add images")
    assert torch.equal(tr, again[0]) and torch.equal(va, again[1])
    with pytest.raises(DataError, match=r"'pets/train' cannot give a stratified validation split .*; add images"):
        split_validation(_labels([3, 1]), seed=0, val_fraction=0.125, name="pets/train", fix="add images")


@pytest.mark.parametrize(
    "counts, pattern",
    [([10], "fewer than two classes"), ([8, 1], "cannot be split into stratified train/val/test")],
)
def test_splits_that_cannot_be_made_are_one_line_data_errors(counts: list[int], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as err:
        split_indices(_labels(counts), seed=0, val_fraction=0.1, test_fraction=0.2, name="tiny")
    assert "'tiny'" in str(err.value) and "\n" not in str(err.value)
