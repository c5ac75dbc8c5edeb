"""Faithfulness of an explanation: deletion and insertion curves (Petsiuk et al. 2018, RISE).

Deletion removes the most relevant features first (replacing them by a baseline) and
tracks the model's probability for the target class; a faithful map makes it fall fast
(low AUC). Insertion starts from the baseline and puts the most relevant features back;
a faithful map makes it rise fast (high AUC). Each sample costs ``steps + 1`` forward
passes, all batched, whatever the number of features (per-pixel flipping would cost one per feature; see
``benchmarks/explain_speed.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DistilensError
from .attribute import eval_mode

__all__ = ["deletion_insertion", "removal_baseline", "gaussian_blur"]

FaithBaseline = float | Tensor | Literal["mean", "blur"]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """(B, C, H, W) blurred by a separable Gaussian of std ``sigma`` pixels (reflected borders)."""
    radius = max(1, min(int(math.ceil(2 * sigma)), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, k) depthwise
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), g, groups=x.shape[1])
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), g.transpose(-1, -2), groups=x.shape[1])


def removal_baseline(x: Tensor, baseline: FaithBaseline) -> Tensor:
    """What a removed feature becomes, shaped like ``x``.

    Args:
        x: (B, C, H, W) images or (B, F) rows.
        baseline: a float (0 = the training mean, since inputs are normalised); ``"mean"``
            (each image's per-channel mean; for tables the batch's per-feature mean);
            ``"blur"`` (images: a Gaussian blur with σ = side/8, Petsiuk et al.'s insertion
            reference); or a tensor of one input's shape or the batch's.
    """
    if isinstance(baseline, Tensor):
        b = baseline.to(x.device, x.dtype)
        if b.shape == x.shape[1:]:
            b = b.unsqueeze(0)
        if b.shape[1:] != x.shape[1:]:
            raise DistilensError(f"faithfulness baseline of shape {tuple(b.shape)} does not fit inputs {tuple(x.shape)}")
        return b.expand_as(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        dims = (2, 3) if x.dim() == 4 else (0,)
        return x.mean(dim=dims, keepdim=True).expand_as(x)
    if baseline == "blur":
        if x.dim() != 4:
            raise DistilensError("faithfulness baseline 'blur' needs images; use a float or 'mean' for tables")
        return gaussian_blur(x, max(1.0, min(x.shape[-2:]) / 8))
    raise DistilensError(f"faithfulness baseline must be a float, 'mean', 'blur' or a tensor, got {baseline!r}")


def _relevance(maps: Tensor, inputs: Tensor) -> Tensor:
    """(B, D) relevance per location: channels summed for images, upsampled if coarser."""
    if inputs.dim() == 4:
        if maps.dim() == 4:
            maps = maps.sum(1, keepdim=True)
            if maps.shape[-2:] != inputs.shape[-2:]:
                maps = nn.functional.interpolate(maps.float(), size=inputs.shape[-2:], mode="bilinear")
        return maps.reshape(maps.shape[0], -1)
    return maps.reshape(maps.shape[0], -1)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: Tensor,
    *,
    steps: int = 16,
    baseline: FaithBaseline = 0.0,
    batch_size: int = 2048,
) -> dict[str, Tensor]:
    """Deletion and insertion curves and their areas.

    Args:
        model: Classifier returning (B, C) logits (evaluated in eval mode).
        inputs: (B, C, H, W) images or (B, F) rows.
        maps: Attributions for ``inputs`` (shaped like them, or (B, 1, h, w) CAMs).
        target: (B,) class whose probability is tracked.
        steps: Number of equal steps from 0 to all features.
        baseline: What stands for "feature removed": a float (0 = the training mean),
            ``"mean"``, ``"blur"`` or a tensor; see :func:`removal_baseline`.
        batch_size: Perturbed inputs per forward pass.

    Returns:
        ``deletion`` and ``insertion``: (B, steps + 1) probabilities; ``deletion_auc`` and
        ``insertion_auc``: (B,) trapezoidal areas over the fraction of features, in [0, 1].
    """
    device = next(model.parameters()).device
    x = inputs.to(device).float()
    rel = _relevance(maps.to(device).float(), x)  # (B, D)
    b, d = rel.shape
    # rank[i, j] = position of feature j in sample i's descending relevance order.
    rank = rel.argsort(dim=1, descending=True).argsort(dim=1)
    counts = torch.round(torch.linspace(0, d, steps + 1, device=device)).long()  # (S+1,)
    chosen = rank.unsqueeze(1) < counts.view(1, -1, 1)  # (B, S+1, D): features moved at step k
    if x.dim() == 4:
        # (B, S+1, D) → (B, S+1, 1, H, W), broadcast over channels.
        chosen = chosen.view(b, steps + 1, 1, *x.shape[-2:])
    xs = x.unsqueeze(1)  # (B, 1, ...)
    base = removal_baseline(x, baseline).unsqueeze(1)
    deleted = torch.where(chosen, base, xs)
    inserted = torch.where(chosen, xs, base)
    tgt = target.to(device).view(b, 1).expand(b, steps + 1).reshape(-1)
    out = {}
    with eval_mode(model):
        for name, batch in (("deletion", deleted), ("insertion", inserted)):
            flat = batch.reshape(b * (steps + 1), *x.shape[1:])
            probs = torch.cat([model(chunk).float().softmax(1) for chunk in flat.split(batch_size)])
            curve = probs.gather(1, tgt.view(-1, 1)).view(b, steps + 1)
            out[name] = curve.cpu()
            out[f"{name}_auc"] = torch.trapezoid(curve, dx=1.0 / steps, dim=1).cpu()
    return out
