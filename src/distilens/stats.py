"""Paired statistics for "did distillation change this, compared with the control?".

Every comparison distilens reports between two models on the same samples (or the same
seeds) is paired: sample i of the student is compared with sample i of the label-only
baseline. This module gives the mean difference with a percentile-bootstrap interval
(Efron & Tibshirani 1993) and the Wilcoxon signed-rank test (Wilcoxon 1945), both on
float64 tensors, seeded, NaN pairs left out and counted.

Example:
    >>> d = paired_difference(torch.tensor([0.8, 0.7, 0.9]), torch.tensor([0.6, 0.7, 0.5]))
    >>> round(d.mean, 3), d.wins, d.ties, d.losses
    (0.2, 2, 1, 0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["bootstrap_mean_ci", "wilcoxon_signed_rank", "paired_difference", "PairedDifference"]

#: Up to this many non-zero differences without ties, the signed-rank p-value is exact.
EXACT_MAX_N = 50


def bootstrap_mean_ci(
    values: Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap interval.

    Args:
        values: (N,) finite numbers, N ≥ 1.
        n_boot: Resamples (with replacement, N each).
        level: Coverage (0.95: the 2.5th and 97.5th percentiles of the resampled means).
        seed: Seeds the resampling, so the interval is reproducible.

    Returns:
        ``(mean, low, high)``.

    Example:
        >>> bootstrap_mean_ci(torch.tensor([1.0, 2.0, 3.0]))[0]
        2.0
    """
    x = values.detach().double().cpu().flatten()
    n = int(x.numel())
    if n == 0:
        raise ValueError("bootstrap_mean_ci needs at least one value")
    g = torch.Generator().manual_seed(seed)
    means = x[torch.randint(0, n, (n_boot, n), generator=g)].mean(1)  # (n_boot,)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return float(x.mean()), float(lo), float(hi)


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks of ``x`` (N,), ties sharing the mean of their ranks."""
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    ranks = torch.empty_like(x)
    i, n = 0, x.numel()
    while i < n:
        j = i
        while j + 1 < n and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1  # ranks i+1 … j+1, averaged
        i = j + 1
    return ranks


def _exact_signed_rank_cdf(n: int) -> Tensor:
    """(n(n+1)/2 + 1,) P(T⁺ ≤ t) for t = 0 … n(n+1)/2 under H0, ranks 1…n without ties.

    Each rank r enters T⁺ with probability ½, so the counts are the coefficients of
    ∏ᵣ (1 + xʳ), built by one shift-and-add per rank.
    """
    top = n * (n + 1) // 2
    counts = torch.zeros(top + 1, dtype=torch.float64)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[: top + 1 - r].clone()
    return torch.cumsum(counts, 0) / 2.0**n


def wilcoxon_signed_rank(differences: Tensor) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test that the differences are centred on 0.

    Zero differences are dropped (Wilcoxon's own convention); the others are ranked by
    absolute value, ties sharing their mean rank. The statistic is T⁺, the sum of the
    ranks of the positive differences. Without ties and with at most
    :data:`EXACT_MAX_N` differences the p-value is exact; otherwise it comes from the
    normal approximation with the tie correction of the variance (no continuity
    correction), as ``scipy.stats.wilcoxon(..., method="approx")``.

    Args:
        differences: (N,) paired differences a − b; NaNs are not allowed here.

    Returns:
        ``(T⁺, p)``; ``(0.0, 1.0)`` when every difference is zero.

    Example:
        >>> wilcoxon_signed_rank(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
        (15.0, 0.0625)
    """
    d = differences.detach().double().cpu().flatten()
    d = d[d != 0]
    n = int(d.numel())
    if n == 0:
        return 0.0, 1.0
    ranks = _average_ranks(d.abs())
    t_plus = float(ranks[d > 0].sum())
    has_ties = bool(torch.unique(d.abs()).numel() < n)
    if n <= EXACT_MAX_N and not has_ties:
        cdf = _exact_signed_rank_cdf(n)
        t = int(round(t_plus))
        lower = float(cdf[t])  # P(T⁺ ≤ t)
        upper = 1.0 - (float(cdf[t - 1]) if t > 0 else 0.0)  # P(T⁺ ≥ t)
        return t_plus, min(1.0, 2.0 * min(lower, upper))
    mean = n * (n + 1) / 4.0
    _, tie_counts = torch.unique(ranks, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float((tie_counts.double() ** 3 - tie_counts.double()).sum()) / 48.0
    if var <= 0:
        return t_plus, 1.0
    z = (t_plus - mean) / math.sqrt(var)
    return t_plus, min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))  # 2·(1 − Φ(|z|))


@dataclass(frozen=True)
class PairedDifference:
    """Mean of a − b over pairs, its bootstrap interval, the signed-rank p-value, and the counts.

    Attributes:
        mean: Mean difference (None when no pair is finite).
        ci_low, ci_high: Percentile-bootstrap interval of the mean.
        p_value: Two-sided Wilcoxon signed-rank p-value.
        n: Pairs used; ``n_nan``: pairs left out because either side is NaN.
        wins, ties, losses: Pairs with a > b, a == b, a < b.
    """

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    n_nan: int
    wins: int
    ties: int
    losses: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below 0 (the difference is shown)."""
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(
    a: Tensor, b: Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> PairedDifference:
    """Paired comparison of ``a`` and ``b`` (N,): mean of a − b, bootstrap CI, Wilcoxon p, wins/ties/losses.

    Args:
        a, b: (N,) per-pair values (per sample, or per seed); pairs with a NaN are left out.
        n_boot, level, seed: See :func:`bootstrap_mean_ci`.

    Example:
        >>> paired_difference(student_spearman, baseline_spearman).excludes_zero
    """
    a = a.detach().double().cpu().flatten()
    b = b.detach().double().cpu().flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.numel()} and {b.numel()}")
    ok = ~(torch.isnan(a) | torch.isnan(b))
    d = a[ok] - b[ok]
    n, n_nan = int(d.numel()), int((~ok).sum())
    if n == 0:
        return PairedDifference(None, None, None, None, 0, n_nan, 0, 0, 0, level)
    mean, lo, hi = bootstrap_mean_ci(d, n_boot=n_boot, level=level, seed=seed)
    _, p = wilcoxon_signed_rank(d)
    return PairedDifference(
        mean, lo, hi, p, n, n_nan, int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum()), level
    )
