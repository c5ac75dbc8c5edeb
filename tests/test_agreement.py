import math

import pytest
import torch
from scipy.stats import kendalltau, pearsonr, spearmanr

from distilens.explain.agreement import (
    agreement_scores,
    cosine,
    kendall,
    pearson,
    spearman,
    ssim,
    summarize,
    topk_iou,
)


def test_identical_maps_score_one() -> None:
    a = torch.randn(4, 1, 8, 8)
    for name, v in agreement_scores(a, a.clone()).items():
        torch.testing.assert_close(v, torch.ones(4), rtol=0, atol=1e-6, msg=name)


def test_a_map_and_its_negative() -> None:
    a = torch.randn(3, 50)
    for fn in (spearman, kendall, pearson, cosine):
        torch.testing.assert_close(fn(a, -a), -torch.ones(3), rtol=0, atol=1e-6, msg=fn.__name__)


def test_identical_maps_give_ssim_one_on_any_grid() -> None:
    for shape in ((3, 1, 8, 8), (3, 2, 32, 32), (3, 5, 5)):
        a = torch.randn(*shape)
        torch.testing.assert_close(ssim(a, a.clone()), torch.ones(3), rtol=0, atol=1e-6)
    a = torch.randn(4, 1, 16, 16)
    assert (ssim(a, torch.randn(4, 1, 16, 16)) < 0.5).all()
    # Invariant to scale and offset (maps are min–max normalised first).
    torch.testing.assert_close(ssim(a, 3 * a + 1), torch.ones(4), rtol=0, atol=1e-6)


def test_ssim_of_constant_maps_is_one() -> None:
    # Both normalise to 0: μ = σ = 0, so SSIM = (C1 · C2) / (C1 · C2) = 1.
    assert ssim(torch.zeros(1, 3, 3), torch.full((1, 3, 3), 2.0)).item() == pytest.approx(1.0)


def test_kendall_and_pearson_match_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (5, 30), generator=g).float()
    b = torch.randint(0, 4, (5, 30), generator=g).float() + 0.5 * a
    tau, r = kendall(a, b), pearson(a, b)
    for i in range(5):
        assert tau[i].item() == pytest.approx(kendalltau(a[i].numpy(), b[i].numpy()).statistic, abs=1e-6)
        assert r[i].item() == pytest.approx(pearsonr(a[i].numpy(), b[i].numpy()).statistic, abs=1e-5)


def test_kendall_in_chunks_equals_all_at_once() -> None:
    a, b = torch.randn(7, 1, 6, 6), torch.randn(7, 1, 6, 6)
    torch.testing.assert_close(kendall(a, b, max_elements=36 * 36 * 2), kendall(a, b))


def test_image_maps_get_ssim_tables_do_not() -> None:
    assert "ssim" in agreement_scores(torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4))
    assert set(agreement_scores(torch.randn(2, 9), torch.randn(2, 9))) == {"spearman", "kendall", "pearson", "topk_iou", "cosine"}


def test_spearman_matches_scipy_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 40), generator=g).float()  # many ties
    b = torch.randint(0, 5, (6, 40), generator=g).float()
    ours = spearman(a, b)
    for i in range(6):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].numpy(), b[i].numpy()).statistic, abs=1e-6)


def test_topk_iou_by_hand() -> None:
    a = torch.tensor([[9.0, 8.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]])
    b = torch.tensor([[9.0, 0.0, 7.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1]])
    # k = 30% of 10 = 3: top(a) = {0,1,2}, top(b) = {0,2,3}; IoU = 2/4.
    assert topk_iou(a, b, k=0.3).item() == pytest.approx(0.5)


def test_constant_maps_are_undefined_and_skipped_in_summaries() -> None:
    a = torch.stack([torch.zeros(10), torch.arange(10.0)])
    b = torch.stack([torch.arange(10.0), torch.arange(10.0)])
    rho = spearman(a, b)
    assert math.isnan(rho[0].item()) and rho[1].item() == pytest.approx(1.0)
    s = summarize({"spearman": rho})["spearman"]
    assert s["mean"] == pytest.approx(1.0) and s["n"] == 1 and s["n_nan"] == 1
    assert s["ci_low"] == pytest.approx(1.0) and s["ci_high"] == pytest.approx(1.0)
    assert summarize({"x": torch.tensor([math.nan])})["x"]["mean"] is None


def test_bootstrap_interval_is_seeded_and_covers_the_mean() -> None:
    values = {"spearman": torch.randn(200, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.5}
    a, b = summarize(values, seed=3), summarize(values, seed=3)
    assert a == b
    s = a["spearman"]
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    # Standard error 0.2/√200 ≈ 0.014: the 95% interval is about ±0.028 wide.
    assert 0.015 < s["ci_high"] - s["mean"] < 0.045


def test_maps_on_different_grids_are_compared_on_the_finer_one() -> None:
    coarse = torch.rand(2, 1, 4, 4)
    fine = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cosine(coarse, fine), torch.ones(2), rtol=0, atol=1e-5)
