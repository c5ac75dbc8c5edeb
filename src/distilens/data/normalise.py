"""Normalisation statistics fitted on a training split and applied to every split.

The only place for the rule "per channel for images, per feature for tables, statistics of
the training split, std clamped away from zero": built-in sets and CSV tables fit with
:func:`fit_normalisation`; image folders (in memory or lazy) stream exact float64 moments
per image (:func:`image_moments`, :func:`stats_from_moments`) so both paths agree bitwise;
every split, and prediction, applies :func:`apply_normalisation`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = ["fit_normalisation", "apply_normalisation", "image_moments", "stats_from_moments"]

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


def image_moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and sum of squared deviations (M2) of one image, in float64.

    Args:
        image: (C, H, W) float32 pixels, unnormalised.

    Returns:
        ``(mean, m2)``, each (C,) float64. Computed from a C-contiguous float64 copy, so
        equal pixels give bitwise-equal moments wherever (and in whichever process) they
        are computed.
    """
    x = np.ascontiguousarray(image, dtype=np.float64).reshape(image.shape[0], -1)  # (C, H, W) -> (C, H*W)
    mean = x.mean(axis=1)
    return mean, ((x - mean[:, None]) ** 2).sum(axis=1)


def stats_from_moments(moments: Iterable[tuple[np.ndarray, np.ndarray]], pixels: int) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of many images from their :func:`image_moments`, in one pass.

    The moments are merged in the given order with the pairwise update of Chan, Golub and
    LeVeque (1979) in float64, so the result is the exact mean and unbiased std (as
    ``Tensor.std``) to float64 rounding, whatever the number of images, and depends only
    on the images and their order: streaming over files and a tensor in memory agree bitwise.

    Args:
        moments: ``(mean, m2)`` per image, each (C,) float64.
        pixels: H × W, the pixels per channel of every image.

    Returns:
        ``(mean, std)``, each (C,) float32; std clamped to at least 1e-6 as in
        :func:`fit_normalisation`.

    Example:
        >>> imgs = np.random.rand(4, 3, 8, 8).astype(np.float32)
        >>> mean, std = stats_from_moments((image_moments(i) for i in imgs), 64)
    """
    n = 0
    mean = m2 = np.zeros(0)
    for mu, q in moments:
        if n == 0:
            n, mean, m2 = pixels, mu.copy(), q.copy()
            continue
        total = n + pixels
        delta = mu - mean
        mean = mean + delta * (pixels / total)
        m2 = m2 + q + delta**2 * (n * pixels / total)
        n = total
    if n == 0:
        raise ValueError("no images to compute statistics from")
    std = np.sqrt(m2 / max(n - 1, 1))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float().clamp_min(_MIN_STD)
