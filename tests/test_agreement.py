import math

import pytest
import torch
from scipy.stats import spearmanr

from distilens.explain.agreement import agreement_scores, cosine, spearman, summarize, topk_iou


def test_identical_maps_score_one() -> None:
    a = torch.randn(4, 1, 8, 8)
    for name, v in agreement_scores(a, a.clone()).items():
        torch.testing.assert_close(v, torch.ones(4), rtol=0, atol=1e-6, msg=name)


def test_a_map_and_its_negative() -> None:
    a = torch.randn(3, 50)
    torch.testing.assert_close(spearman(a, -a), -torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(cosine(a, -a), -torch.ones(3), rtol=0, atol=1e-6)


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
    assert summarize({"spearman": rho})["spearman"] == pytest.approx(1.0)
    assert summarize({"x": torch.tensor([math.nan])})["x"] is None


def test_maps_on_different_grids_are_compared_on_the_finer_one() -> None:
    coarse = torch.rand(2, 1, 4, 4)
    fine = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(cosine(coarse, fine), torch.ones(2), rtol=0, atol=1e-5)
