"""How much two explanations agree, per sample: rank correlation, top-k overlap, cosine.

All functions take two attribution tensors of one batch, (B, ...) each, and return a (B,)
tensor. Maps are first reduced to one value per location (channels summed) and brought to
one grid. A score that is undefined for a sample (a constant map has no ranking and no
direction) is NaN, and summaries skip NaNs and count them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_common_grid", "spearman", "topk_iou", "cosine", "agreement_scores", "summarize"]


def _flat(maps: Tensor) -> Tensor:
    """(B, C, H, W) → (B, H·W) with channels summed; (B, F) stays; (B, H, W) → (B, H·W)."""
    if maps.dim() == 4:
        maps = maps.sum(1)
    return maps.reshape(maps.shape[0], -1).float()


def to_common_grid(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Reduce both maps to (B, D) on one grid, upsampling the coarser image map bilinearly."""
    if a.dim() == 4 and b.dim() == 4 and a.shape[-2:] != b.shape[-2:]:
        size = max(a.shape[-2:], b.shape[-2:], key=lambda s: s[0] * s[1])
        a = F.interpolate(a.sum(1, keepdim=True).float(), size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b.sum(1, keepdim=True).float(), size=size, mode="bilinear", align_corners=False)
    a, b = _flat(a), _flat(b)
    if a.shape != b.shape:
        raise ValueError(f"maps have different sizes after reduction: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def _average_ranks(x: Tensor) -> Tensor:
    """(B, D) → (B, D) ranks 1..D, ties given their average rank (as in scipy.stats.rankdata)."""
    ranks = torch.empty_like(x, dtype=torch.float64)
    for i, row in enumerate(x):
        _, inverse, counts = torch.unique(row, sorted=True, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2  # mean of ranks start+1 .. end
        ranks[i] = avg[inverse]
    return ranks


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(1) / denom
    return torch.where(denom > 0, r, torch.full_like(r, math.nan)).float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman's rank correlation per sample, in [−1, 1]; NaN where a map is constant."""
    a, b = to_common_grid(a, b)
    return _pearson(_average_ranks(a), _average_ranks(b))


def topk_iou(a: Tensor, b: Tensor, k: float = 0.1) -> Tensor:
    """|top-k(a) ∩ top-k(b)| / |top-k(a) ∪ top-k(b)| by absolute value, k a fraction of D."""
    a, b = to_common_grid(a, b)
    d = a.shape[1]
    n = max(1, int(round(k * d)))
    ia = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.abs().topk(n, dim=1).indices, True)
    ib = torch.zeros_like(b, dtype=torch.bool).scatter_(1, b.abs().topk(n, dim=1).indices, True)
    inter = (ia & ib).sum(1).float()
    union = (ia | ib).sum(1).float()
    return inter / union


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity per sample; NaN where a map is all zeros."""
    a, b = to_common_grid(a, b)
    denom = a.double().norm(dim=1) * b.double().norm(dim=1)
    c = (a.double() * b.double()).sum(1) / denom
    return torch.where(denom > 0, c, torch.full_like(c, math.nan)).float()


def agreement_scores(a: Tensor, b: Tensor, k: float = 0.1) -> dict[str, Tensor]:
    """``{"spearman", "topk_iou", "cosine"}`` → (B,) scores for two batches of maps."""
    return {"spearman": spearman(a, b), "topk_iou": topk_iou(a, b, k), "cosine": cosine(a, b)}


def summarize(scores: dict[str, Tensor]) -> dict[str, float | None]:
    """Mean of each score over samples, NaNs skipped (``None`` when all are NaN)."""
    out: dict[str, float | None] = {}
    for name, values in scores.items():
        finite = values[~torch.isnan(values)]
        out[name] = float(finite.mean()) if finite.numel() else None
    return out
