import math

import pytest
import torch
import torch.nn.functional as F

from distilens.distill.feature_losses import (
    attention_map,
    attention_transfer_loss,
    explanation_alignment_loss,
    hint_loss,
    input_gradient_alignment_loss,
    match_spatial,
)


# ---------------------------------------------------------------- FitNets hint
def test_hint_is_mse_and_zero_for_equal_maps() -> None:
    f = torch.randn(2, 3, 4, 4)
    assert hint_loss(f, f.clone()).item() == 0.0
    # Hand value: maps differ by 1 in one of 2·1·1·2 = 4 entries → MSE 1/4; by 2 everywhere → 4.
    a = torch.zeros(2, 1, 1, 2)
    b = a.clone()
    b[0, 0, 0, 0] = 1.0
    assert hint_loss(a, b).item() == pytest.approx(0.25)
    assert hint_loss(a, a + 2).item() == pytest.approx(4.0)


def test_hint_resizes_the_student_to_the_teacher_grid() -> None:
    s = torch.ones(2, 3, 2, 2)  # constant maps stay constant under bilinear resizing
    t = torch.full((2, 3, 4, 4), 3.0)
    assert hint_loss(s, t).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="do not match"):
        hint_loss(torch.zeros(2, 5), torch.zeros(2, 4))


# ---------------------------------------------------------------- attention transfer
def test_attention_map_is_unit_norm_sum_of_squares() -> None:
    a = torch.tensor([[[[1.0, -2.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2): Q = (1, 5), ‖Q‖ = √26
    q = attention_map(a)
    torch.testing.assert_close(q, torch.tensor([[1.0, 5.0]]) / math.sqrt(26))


def test_attention_transfer_hand_value() -> None:
    # Student A = (1, 2) → Q = (1, 4)/√17; teacher (2, 1) → (4, 1)/√17; diff = (−3, 3)/√17,
    # mean of squares = 9/17; loss = β/2 · 9/17 = 500 · 9/17 = 264.705882 at β = 1000.
    s = torch.tensor([[[[1.0, 2.0]]]])
    t = torch.tensor([[[[2.0, 1.0]]]])
    assert attention_transfer_loss(s, t).item() == pytest.approx(500 * 9 / 17, rel=1e-6)
    assert attention_transfer_loss(s, t, beta=2.0).item() == pytest.approx(9 / 17, rel=1e-6)


def test_attention_transfer_is_scale_and_channel_invariant_and_resizes() -> None:
    a = torch.randn(3, 4, 5, 5)
    assert attention_transfer_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)
    # Channel counts may differ (only Σ_c matters): duplicate channels of the teacher.
    assert attention_transfer_loss(a, torch.cat([a, a], 1)).item() == pytest.approx(0.0, abs=1e-6)
    # A constant student attention on 2×2 equals the teacher's constant 4×4 one after resizing.
    assert attention_transfer_loss(torch.ones(2, 3, 2, 2), torch.ones(2, 5, 4, 4)).item() == pytest.approx(0.0, abs=1e-6)
    # Different maps: positive, and the gradient reaches the student only.
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 6, 4, 4, requires_grad=True)
    loss = attention_transfer_loss(s, t)
    loss.backward()
    assert loss.item() > 0 and s.grad is not None and t.grad is None


def test_match_spatial_is_identity_on_equal_sizes() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert match_spatial(x, (4, 4)) is x
    assert match_spatial(torch.randn(2, 2, 2), (4, 4)).shape == (2, 4, 4)


# ---------------------------------------------------------------- explanation alignment
def test_explanation_alignment_hand_value() -> None:
    # (1, 0) vs (1, 1): cos = 1/√2 → loss 1 − 0.707107 = 0.292893; equal maps → 0;
    # orthogonal maps → 1; an all-zero student map has similarity 0 → 1.
    s = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 1.0]], [[0.0, 0.0]]])
    t = torch.tensor([[[1.0, 1.0]], [[2.0, 2.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    per = [1 - 1 / math.sqrt(2), 0.0, 1.0, 1.0]
    for i, ref in enumerate(per):
        assert explanation_alignment_loss(s[i : i + 1], t[i : i + 1]).item() == pytest.approx(ref, abs=1e-6)
    assert explanation_alignment_loss(s, t).item() == pytest.approx(sum(per) / 4, abs=1e-6)


def test_input_gradient_alignment_hand_value() -> None:
    # a = (3, 4)/5 = (.6, .8), b = (4, 3)/5 = (.8, .6): ‖a − b‖² = 2 · 0.04 = 0.08 = 2 − 2·cos (cos = 0.96).
    a = torch.tensor([[3.0, 4.0]])
    b = torch.tensor([[4.0, 3.0]])
    assert input_gradient_alignment_loss(a, b).item() == pytest.approx(0.08, rel=1e-6)
    g = torch.randn(4, 1, 3, 3)
    h = torch.randn(4, 1, 3, 3)
    cos = F.cosine_similarity(g.flatten(1), h.flatten(1))
    assert input_gradient_alignment_loss(g, h).item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-5)
    assert input_gradient_alignment_loss(g, 7 * g).item() == pytest.approx(0.0, abs=1e-6)
