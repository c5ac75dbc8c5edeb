"""How much two explanations agree, per sample: rank correlations, top-k overlap, cosine, SSIM.

All functions take two attribution tensors of one batch, (B, ...) each, and return a (B,)
tensor. Maps are first reduced to one value per location (channels summed) and brought to
one grid. A score that is undefined for a sample (a constant map has no ranking and no
direction) is NaN, and summaries skip NaNs and count them.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from ..stats import bootstrap_mean_ci

__all__ = [
    "to_common_grid",
    "spearman",
    "kendall",
    "pearson",
    "topk_iou",
    "cosine",
    "ssim",
    "agreement_scores",
    "summarize",
    "ScoreSummary",
]


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
    x = x.double()
    ordered = x.sort(dim=1).values
    below = torch.searchsorted(ordered, x, side="left")  # values strictly smaller
    upto = torch.searchsorted(ordered, x, side="right")  # values smaller or equal
    return (below + upto + 1).double() / 2  # mean of ranks below+1 .. upto


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


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson's linear correlation per sample, in [−1, 1]; NaN where a map is constant."""
    a, b = to_common_grid(a, b)
    return _pearson(a, b)


def kendall(a: Tensor, b: Tensor, max_elements: int = 2**24) -> Tensor:
    """Kendall's τ-b per sample (ties handled, as ``scipy.stats.kendalltau``); NaN where a map is constant.

    τ_b = Σ_{i<j} sgn(a_i − a_j)·sgn(b_i − b_j) / √(n_a · n_b), with n_a, n_b the pairs
    not tied in a, in b. Exact and O(D²) per sample: samples are processed in chunks of at
    most ``max_elements`` pair entries, so memory stays bounded (D = 1024 costs 1 M pairs).
    """
    a, b = to_common_grid(a, b)
    n, d = a.shape
    out = torch.empty(n, dtype=torch.float64)
    chunk = max(1, max_elements // max(1, d * d))
    for s in range(0, n, chunk):
        sa = torch.sign(a[s : s + chunk, :, None] - a[s : s + chunk, None, :])  # (b, D, D)
        sb = torch.sign(b[s : s + chunk, :, None] - b[s : s + chunk, None, :])
        concord = (sa * sb).sum((1, 2)).double()  # each pair counted twice; cancels in the ratio
        denom = (sa.abs().sum((1, 2)).double() * sb.abs().sum((1, 2)).double()).sqrt()
        out[s : s + chunk] = torch.where(denom > 0, concord / denom, torch.full_like(denom, math.nan)).cpu()
    return out.float().to(a.device)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    """(1, 1, size, size) normalised Gaussian kernel."""
    g = torch.exp(-((torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _spatial(maps: Tensor) -> Tensor:
    """(B, C, H, W) → (B, 1, H, W) channels summed; (B, H, W) → (B, 1, H, W)."""
    if maps.dim() == 4:
        return maps.sum(1, keepdim=True).double()
    if maps.dim() == 3:
        return maps.unsqueeze(1).double()
    raise ValueError(f"ssim needs image maps (B, C, H, W) or (B, H, W), got {tuple(maps.shape)}")


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity of two maps per sample (Wang et al. 2004), in [−1, 1].

    Both maps are summed over channels, brought to the finer grid, and min–max normalised
    to [0, 1] per sample (a constant map becomes 0), so SSIM compares where the relevance
    lies, not its scale. Gaussian window of ``window`` × ``window`` pixels with σ = 1.5 —
    shrunk to the largest odd size that fits for maps smaller than the window (7 × 7 on
    8 × 8 digits) — with the paper's constants C1 = (0.01)², C2 = (0.03)² for range 1, and
    the mean over the valid positions of the window.

    Args:
        a, b: (B, C, H, W) or (B, H, W) maps (grids may differ).

    Returns:
        (B,) SSIM; identical maps score 1.
    """
    a, b = _spatial(a), _spatial(b)
    if a.shape[-2:] != b.shape[-2:]:
        size = max(a.shape[-2:], b.shape[-2:], key=lambda s: s[0] * s[1])
        a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)

    def unit(m: Tensor) -> Tensor:
        lo = m.flatten(1).min(1).values.view(-1, 1, 1, 1)
        hi = m.flatten(1).max(1).values.view(-1, 1, 1, 1)
        return torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(m))

    a, b = unit(a), unit(b)
    side = min(window, *a.shape[-2:])
    side -= 1 - side % 2  # odd
    w = _gaussian_window(side, sigma, a.device)
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a**2
    var_b = F.conv2d(b * b, w) - mu_b**2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1).float()


def _is_image(maps: Tensor) -> bool:
    return maps.dim() in (3, 4)


def agreement_scores(a: Tensor, b: Tensor, k: float = 0.1) -> dict[str, Tensor]:
    """All scores for two batches of maps: name → (B,).

    ``spearman``, ``kendall``, ``pearson``, ``topk_iou`` (top ``k`` fraction), ``cosine``;
    and ``ssim`` where both are image maps.
    """
    scores = {
        "spearman": spearman(a, b),
        "kendall": kendall(a, b),
        "pearson": pearson(a, b),
        "topk_iou": topk_iou(a, b, k),
        "cosine": cosine(a, b),
    }
    if _is_image(a) and _is_image(b):
        scores["ssim"] = ssim(a, b)
    return scores


class ScoreSummary(TypedDict):
    """Mean of one score over samples with its bootstrap interval; NaNs skipped and counted."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_nan: int


def summarize(
    scores: dict[str, Tensor], *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, ScoreSummary]:
    """Mean of each score and its percentile-bootstrap interval (Efron & Tibshirani 1993;
    :func:`distilens.stats.bootstrap_mean_ci`).

    NaN scores (undefined for a sample, e.g. a constant map) are left out and counted in
    ``n_nan``; all-NaN scores get ``None``. The resampling is seeded, so the interval is
    reproducible.

    Args:
        scores: name → (N,) per-sample scores.
        n_boot: Bootstrap resamples.
        level: Coverage of the interval (0.95 → the 2.5 and 97.5 percentiles).
        seed: Seeds the resampling.

    Example:
        >>> summarize({"spearman": torch.tensor([0.5, 0.7, nan])})["spearman"]["n_nan"]
        1
    """
    out: dict[str, ScoreSummary] = {}
    for name, values in scores.items():
        values = values.detach().double().cpu().flatten()
        finite = values[~torch.isnan(values)]
        n = int(finite.numel())
        if n == 0:
            out[name] = ScoreSummary(mean=None, ci_low=None, ci_high=None, n=0, n_nan=int(values.numel()))
            continue
        mean, lo, hi = bootstrap_mean_ci(finite, n_boot=n_boot, level=level, seed=seed)
        out[name] = ScoreSummary(mean=mean, ci_low=lo, ci_high=hi, n=n, n_nan=int(values.numel()) - n)
    return out


def means(summary: dict[str, ScoreSummary]) -> dict[str, float | None]:
    """name → mean, the flat form that metrics.json's ``agreement`` block holds."""
    return {k: v["mean"] for k, v in summary.items()}
