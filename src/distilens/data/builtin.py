"""Built-in data sets: they ship with scikit-learn, so nothing is ever downloaded."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..registry import Registry

__all__ = ["DATASETS", "RawData"]


class RawData(NamedTuple):
    """A whole data set before splitting: raw (unnormalised) inputs and integer labels."""

    inputs: Tensor  # (N, *shape) float32
    targets: Tensor  # (N,) int64
    kind: str  # "image" | "table"
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    masks: Tensor | None = None


DATASETS: Registry[Callable[[int], RawData]] = Registry("dataset")


@DATASETS.register("digits")
def digits(seed: int = 0) -> RawData:
    """sklearn's 8×8 handwritten digits (1,797 images, 10 classes), pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    return RawData(x, y, "image", tuple(str(c) for c in range(10)))


@DATASETS.register("breast_cancer")
def breast_cancer(seed: int = 0) -> RawData:
    """sklearn's Wisconsin breast-cancer table (569 rows, 30 numeric features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = torch.from_numpy(d.data.astype(np.float32))
    y = torch.from_numpy(d.target.astype(np.int64))
    return RawData(
        x, y, "table", tuple(str(c) for c in d.target_names), tuple(str(f) for f in d.feature_names)
    )


@DATASETS.register("wine")
def wine(seed: int = 0) -> RawData:
    """sklearn's wine recognition table (178 rows, 13 numeric features, 3 cultivars)."""
    from sklearn.datasets import load_wine

    d = load_wine()
    x = torch.from_numpy(d.data.astype(np.float32))
    y = torch.from_numpy(d.target.astype(np.int64))
    return RawData(
        x, y, "table", tuple(str(c) for c in d.target_names), tuple(str(f) for f in d.feature_names)
    )
