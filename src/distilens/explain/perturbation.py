"""Explainers that perturb the input and watch the output: occlusion, KernelSHAP, LIME.

Importing this module registers the methods in :data:`~.explainers.EXPLAINERS` for image and
table inputs (occlusion of tokens is in :mod:`.tokens`). Tables are perturbed
one feature at a time; images in square patches (occlusion) or square superpixels
(KernelSHAP, LIME), so that a few hundred samples suffice.
"""

from __future__ import annotations

# Captum is imported inside the functions that use it: importing the explain package (as
# `distilens list` and every command's start do) does not pay for it.

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..errors import DistilensError
from .explainers import register_explainer
from .hygiene import seeded

__all__ = ["block_feature_mask", "WeightedRidge", "exp_cosine_kernel"]


def _auto_window(x: Tensor) -> int:
    """A patch of about 1/8 of the image side (1 pixel on 8×8 digits, 4 on 32×32)."""
    return max(1, min(x.shape[-2:]) // 8)


@register_explainer("occlusion", "image", "table")
def _occlusion(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    window: int | None = None,
    stride: int | None = None,
    baseline: float = 0.0,
    perturbations_per_eval: int = 16,
) -> Tensor:
    """Occlusion (Zeiler & Fergus 2014): f(x) − f(x with a patch set to ``baseline``).

    Images: square ``window`` × ``window`` patches over all channels moved by ``stride``
    (defaults: about 1/8 of the side, stride half the window); each pixel gets the mean over
    the patches that cover it. Tables: one feature at a time (``window``/``stride`` must
    stay unset, since columns have no neighbours). Shaped like the inputs.
    """
    from captum.attr import Occlusion
    occ = Occlusion(model)
    if x.dim() == 2:
        if window not in (None, 1) or stride not in (None, 1):
            raise DistilensError("occlusion on tables occludes one feature at a time; drop the window/stride options")
        shape: tuple[int, ...] = (1,)
        strides: tuple[int, ...] | int = 1
    else:
        w = int(window) if window is not None else _auto_window(x)
        s = int(stride) if stride is not None else max(1, w // 2)
        if not (1 <= w <= min(x.shape[-2:])) or s < 1:
            raise DistilensError(f"occlusion: window {w} / stride {s} do not fit a {tuple(x.shape[-2:])} image")
        shape, strides = (x.shape[1], w, w), (x.shape[1], s, s)
    return occ.attribute(
        x, sliding_window_shapes=shape, strides=strides, baselines=float(baseline), target=target,
        perturbations_per_eval=perturbations_per_eval,
    )


def block_feature_mask(shape: tuple[int, ...], block: int) -> Tensor:
    """Interpretable features for images: square superpixels of ``block`` × ``block`` pixels.

    Args:
        shape: One input's shape (C, H, W).
        block: Side of a superpixel in pixels.

    Returns:
        (1, C, H, W) int64 group index, the same for all channels of a pixel.
    """
    _, h, w = shape
    rows = torch.arange(h) // block
    cols = torch.arange(w) // block
    groups = rows.view(-1, 1) * ((w + block - 1) // block) + cols.view(1, -1)  # (H, W)
    return groups.expand(shape[0], h, w).unsqueeze(0).contiguous()


class WeightedRidge:
    """LIME's surrogate: a ridge regression with intercept, each sample weighted by its similarity.

    Closed form in float64, as scikit-learn's ``Ridge(alpha).fit(X, y, sample_weight=w)``
    solves it: centre X and y on their weighted means, scale rows by √w, then
    coef = (XᵀX + αI)⁻¹ Xᵀy. Captum's ``Lime`` calls :meth:`fit` with a loader of
    (interpretable inputs, outputs, weights) and reads :meth:`representation`.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)
        self.coef: Tensor | None = None

    def fit(self, train_data: DataLoader, **kwargs: Any) -> None:
        xs, ys, ws = zip(*train_data)
        x, y, w = (torch.cat(t).double().cpu() for t in (xs, ys, ws))
        w = w.reshape(-1)
        x_mean = (w[:, None] * x).sum(0) / w.sum()
        y_mean = (w * y.reshape(-1)).sum() / w.sum()
        root = w.sqrt()
        xc = (x - x_mean) * root[:, None]  # (n, F)
        yc = (y.reshape(-1) - y_mean) * root  # (n,)
        gram = xc.T @ xc + self.alpha * torch.eye(x.shape[1], dtype=torch.float64)
        self.coef = torch.linalg.solve(gram, xc.T @ yc).float()

    def representation(self) -> Tensor:
        """(1, F) the fitted coefficients."""
        if self.coef is None:
            raise RuntimeError("WeightedRidge.representation() before fit()")
        return self.coef.view(1, -1)


def exp_cosine_kernel(width: float) -> Callable[..., float]:
    """LIME's sample weight: exp(−d² / 2σ²) with d the cosine distance of the flattened inputs, σ = ``width``."""

    def similarity(original: Tensor, perturbed: Tensor, _: Any, **kwargs: Any) -> float:
        d = 1 - F.cosine_similarity(original.flatten().float(), perturbed.flatten().float(), dim=0)
        return math.exp(-float(d) ** 2 / (2 * width**2))

    return similarity


def _surrogate(
    cls: type, model: nn.Module, x: Tensor, target: Tensor | int, n_samples: int, block: int | None,
    baseline: float, seed: int, perturbations_per_eval: int, **extra: Any,
) -> Tensor:
    """Fit a KernelSHAP/LIME surrogate per sample (Captum needs one input at a time)."""
    mask = None
    if x.dim() == 4:
        b = int(block) if block is not None else max(2, _auto_window(x))
        mask = block_feature_mask(tuple(x.shape[1:]), b).to(x.device)
    elif block not in (None, 1):
        raise DistilensError("block groups pixels of images; tables use one feature per column, drop it")
    explainer = cls(model, **extra)
    outs = []
    for i in range(x.shape[0]):
        ti = target if isinstance(target, int) else target[i : i + 1]
        # Each sample is seeded alone, so the result does not depend on the batch.
        with seeded(seed, x.device):
            outs.append(
                explainer.attribute(
                    x[i : i + 1], baselines=float(baseline), target=ti, feature_mask=mask,
                    n_samples=n_samples, perturbations_per_eval=perturbations_per_eval,
                )
            )
    return torch.cat(outs)


@register_explainer("kernel_shap", "image", "table")
def _kernel_shap(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    n_samples: int = 256,
    block: int | None = None,
    baseline: float = 0.0,
    seed: int = 0,
    perturbations_per_eval: int = 64,
) -> Tensor:
    """KernelSHAP (Lundberg & Lee 2017): Shapley values by a weighted linear fit on coalitions.

    Tables: one feature per column. Images: square superpixels of ``block`` pixels
    (default about 1/8 of the side, at least 2) that share one value. Absent features take
    ``baseline`` (0 = the training mean). ``n_samples`` coalitions per input, drawn from a
    generator seeded with ``seed``. Shaped like the inputs.
    """
    from captum.attr import KernelShap
    return _surrogate(KernelShap, model, x, target, n_samples, block, baseline, seed, perturbations_per_eval)


@register_explainer("lime", "image", "table")
def _lime(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    n_samples: int = 256,
    block: int | None = None,
    baseline: float = 0.0,
    seed: int = 0,
    kernel_width: float = 0.75,
    alpha: float = 1.0,
    perturbations_per_eval: int = 64,
) -> Tensor:
    """LIME (Ribeiro et al. 2016): a local ridge model on random on/off masks of the features.

    Same features as ``kernel_shap``; samples are weighted by an exponential kernel on the
    cosine distance to the input (``kernel_width``), the surrogate is a ridge regression
    (``alpha``; Captum's default lasso often zeroes every weight). Seeded by ``seed``.
    """
    from captum.attr import Lime

    return _surrogate(
        Lime, model, x, target, n_samples, block, baseline, seed, perturbations_per_eval,
        interpretable_model=WeightedRidge(alpha),
        similarity_func=exp_cosine_kernel(kernel_width),
    )
