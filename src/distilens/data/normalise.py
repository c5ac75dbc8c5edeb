"""Normalisation statistics fitted on a training split and applied to every split.

One place for the rule "per channel for images, per feature for tables, std clamped away
from zero", so that every loader (built-in sets, image folders with given splits, CSV
tables) normalises the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fit_normalisation", "apply_normalisation"]

_MIN_STD = 1e-6


def fit_normalisation(train_inputs: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Mean and std of the training inputs: per channel for images, per feature for tables.

    Args:
        train_inputs: (N, C, H, W) images or (N, F) table rows, float32, unnormalised.
        kind: ``"image"`` or ``"table"``.

    Returns:
        ``(mean, std)``, each (C,) or (F,); std is clamped to at least 1e-6 so that a
        constant channel or feature maps to 0 instead of dividing by zero.

    Example:
        >>> mean, std = fit_normalisation(torch.rand(10, 3, 8, 8), "image")
        >>> mean.shape
        torch.Size([3])
    """
    reduce = [0, 2, 3] if kind == "image" else [0]
    mean = train_inputs.mean(dim=reduce)
    std = train_inputs.std(dim=reduce).clamp_min(_MIN_STD)
    return mean, std


def apply_normalisation(inputs: Tensor, mean: Tensor, std: Tensor, kind: str) -> Tensor:
    """``(inputs - mean) / std`` broadcast per channel (images) or per feature (tables)."""
    shape = (1, -1, 1, 1) if kind == "image" else (1, -1)
    mean = torch.as_tensor(mean, dtype=inputs.dtype)
    std = torch.as_tensor(std, dtype=inputs.dtype)
    return (inputs - mean.view(shape)) / std.view(shape)
