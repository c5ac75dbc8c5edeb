"""Paired statistics: the signed-rank test against scipy on fixed numbers, the bootstrap, the planted cases."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats as sps

from distilens.stats import bootstrap_mean_ci, paired_difference, wilcoxon_signed_rank


def test_exact_signed_rank_matches_scipy_without_ties() -> None:
    g = torch.Generator().manual_seed(3)
    for n in (1, 2, 5, 9, 20, 50):
        d = torch.randn(n, generator=g, dtype=torch.float64)
        t, p = wilcoxon_signed_rank(d)
        ref = sps.wilcoxon(d.numpy(), alternative="two-sided", method="exact")
        assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)
        ranks = torch.argsort(torch.argsort(d.abs())) + 1  # no ties in continuous draws
        assert t == float(ranks[d > 0].sum())


def test_hand_values() -> None:
    # All five positive: T+ = 15, P(T+ = 15) = 1/32, two-sided 2/32.
    assert wilcoxon_signed_rank(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])) == (15.0, 0.0625)
    # Zeros are dropped; only zeros: no evidence.
    assert wilcoxon_signed_rank(torch.zeros(7)) == (0.0, 1.0)
    # Symmetric: T+ = 5 of 10 possible with n = 4 (ranks 1+4 = 2+3): p = 1.
    assert wilcoxon_signed_rank(torch.tensor([1.0, -2.0, -3.0, 4.0]))[1] == 1.0


def test_normal_approximation_with_ties_matches_scipy() -> None:
    d = torch.tensor([0.1, 0.1, -0.2, 0.3, 0.3, 0.3, 0.05, -0.05, 0.4, 0.0, 0.2, 0.25] * 6, dtype=torch.float64)
    t, p = wilcoxon_signed_rank(d)
    ref = sps.wilcoxon(d.numpy(), alternative="two-sided", method="approx", zero_method="wilcox", correction=False)
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9)
    d_large = torch.randn(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.1
    ref = sps.wilcoxon(d_large.numpy(), method="approx", correction=False)
    assert wilcoxon_signed_rank(d_large)[1] == pytest.approx(float(ref.pvalue), rel=1e-9)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    x = torch.arange(20, dtype=torch.float64)
    m, lo, hi = bootstrap_mean_ci(x, seed=5)
    assert m == 9.5 and lo < m < hi
    assert bootstrap_mean_ci(x, seed=5) == (m, lo, hi)
    assert bootstrap_mean_ci(torch.full((9,), 0.25)) == (0.25, 0.25, 0.25)


def test_planted_copy_of_the_teacher_shows_a_difference() -> None:
    # Student agreement 1 (it is the teacher); baseline ~0.6 ± noise: the CI excludes 0.
    base = 0.6 + 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = paired_difference(torch.ones(64), base)
    assert d.excludes_zero and d.ci_low > 0 and d.p_value < 1e-6
    assert (d.wins, d.ties, d.losses) == (64, 0, 0)


def test_same_model_shows_no_difference() -> None:
    x = torch.rand(64, generator=torch.Generator().manual_seed(0))
    d = paired_difference(x, x.clone())
    assert d.mean == 0.0 and d.ci_low <= 0.0 <= d.ci_high and not d.excludes_zero
    assert d.p_value == 1.0 and d.ties == 64


def test_nan_pairs_are_left_out_and_counted() -> None:
    a = torch.tensor([0.5, math.nan, 0.7, 0.9])
    b = torch.tensor([0.4, 0.3, math.nan, 0.8])
    d = paired_difference(a, b)
    assert (d.n, d.n_nan) == (2, 2) and d.mean == pytest.approx(0.1)
    assert paired_difference(torch.tensor([math.nan]), torch.tensor([1.0])).mean is None
    with pytest.raises(ValueError):
        paired_difference(torch.ones(3), torch.ones(4))
