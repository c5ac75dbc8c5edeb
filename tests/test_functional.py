import math

import pytest
import torch
import torch.nn.functional as F

from distilens.distill.functional import ce_loss, kd_loss, kl_divergence


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_kd_is_zero_for_equal_logits(temperature: float) -> None:
    z = torch.randn(8, 10) * 3
    assert kd_loss(z, z.clone(), temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_is_positive_for_different_logits() -> None:
    for _ in range(20):
        s, t = torch.randn(4, 5), torch.randn(4, 5)
        assert kd_loss(s, t, 3.0).item() > 0


def test_kd_hand_computed_reference_2x3_at_T2() -> None:
    # Row 1: t/T = [1.5, 1, 0.5], s/T = [0.5, 1, 1.5], so p = softmax(t/T) = (a, b, c) with
    # a = 0.506480, b = 0.307196, c = 0.186324 and q is p reversed: log(p/q) = (1, 0, -1),
    # KL = a - c = 0.320157. Row 2: p = (a, b, c), q = softmax([0, .25, -.25]) =
    # (0.326496, 0.419229, 0.254275), KL = Σ p log(p/q) = 0.068929.
    # kd = T² · mean(KL) = 4 · (0.320157 + 0.068929) / 2 = 0.778171.
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.5, -0.5]])
    t = torch.tensor([[3.0, 2.0, 1.0], [1.0, 0.0, -1.0]])
    assert kd_loss(s, t, 2.0).item() == pytest.approx(0.7781707497709816, rel=1e-6)
    a, c = 0.506480391055654, 0.1863237232258476
    assert kl_divergence(t, s, 2.0)[0].item() == pytest.approx(a - c, rel=1e-6)


def test_kd_equals_torch_kl_div_batchmean_times_T_squared() -> None:
    s, t, T = torch.randn(16, 7), torch.randn(16, 7), 3.0
    ref = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True, reduction="batchmean") * T * T
    assert kd_loss(s, t, T).item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_kd_gradient_has_the_T_squared_scale(temperature: float) -> None:
    # d/ds [T² KL(p_t || softmax(s/T))] = T (softmax(s/T) - softmax(t/T)), divided by B.
    b = 6
    s = torch.randn(b, 5, requires_grad=True)
    t = torch.randn(b, 5)
    kd_loss(s, t, temperature).backward()
    expected = temperature * (F.softmax(s.detach() / temperature, 1) - F.softmax(t / temperature, 1)) / b
    torch.testing.assert_close(s.grad, expected, rtol=1e-5, atol=1e-7)


def test_kd_gradient_scale_is_stable_in_T_for_close_logits() -> None:
    # Hinton et al.: for large T the gradient tends to (s - t)/(C·B), independent of T.
    b, c = 4, 10
    s = torch.randn(b, c) * 0.1
    t = torch.randn(b, c) * 0.1
    d = s - t
    limit = (d - d.mean(1, keepdim=True)) / (c * b)  # entries of size ~2e-3
    for T in (20.0, 80.0):
        x = s.clone().requires_grad_(True)
        kd_loss(x, t, T).backward()
        torch.testing.assert_close(x.grad, limit, rtol=0, atol=5e-5)


def test_kd_does_not_backpropagate_into_the_teacher() -> None:
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t, 2.0).backward()
    assert t.grad is None


def test_kd_is_computed_in_fp32_from_half_inputs() -> None:
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    out = kd_loss(s.half(), t.bfloat16(), 4.0)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(kd_loss(s.half().float(), t.bfloat16().float(), 4.0).item(), rel=1e-6)


def test_kd_rejects_non_positive_temperature() -> None:
    with pytest.raises(ValueError):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_ce_matches_torch_and_label_smoothing() -> None:
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    assert ce_loss(z, y).item() == pytest.approx(F.cross_entropy(z, y).item())
    # Uniform logits: CE = log C whatever the smoothing.
    assert ce_loss(torch.zeros(2, 4), torch.tensor([1, 2]), 0.3).item() == pytest.approx(math.log(4))


# ---------------------------------------------------------------- decoupled KD (Zhao et al. 2022)
from distilens.distill.functional import dkd_loss, dkd_parts  # noqa: E402


def test_dkd_hand_computed_reference_2x3_at_T2() -> None:
    # Computed once with plain-Python math (softmax, KL sums), kept here:
    # Row 1: s/T = [.5, 1, 0], t/T = [1.5, .5, 0], target 0.
    #   p_s = (0.307196, 0.506480, 0.186324), p_t = (0.628532, 0.231224, 0.140244)
    #   TCKD = KL((.628532, .371468) ‖ (.307196, .692804)) = 0.218436
    #   NCKD = KL((.622478, .377522) ‖ (.731087, .268913)) = 0.027955
    # Row 2: s = [.5, -1, 2], t = [0, 1, .5], target 2: TCKD = 0.140875, NCKD = 0.190868.
    # DKD(α=1, β=8, T=2) = 4 · (mean TCKD + 8 · mean NCKD) = 4 · (0.179656 + 8 · 0.109412) = 4.219795.
    s = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 2.0]])
    t = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 0.5]])
    y = torch.tensor([0, 2])
    tckd, nckd = dkd_parts(s, t, y, 2.0)
    torch.testing.assert_close(tckd, torch.tensor([0.2184362471268738, 0.14087541301985987]), rtol=1e-5, atol=0)
    torch.testing.assert_close(nckd, torch.tensor([0.0279550377371887, 0.19086818593711127]), rtol=1e-5, atol=0)
    assert dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=2.0).item() == pytest.approx(4.219794899082267, rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_decomposes_classical_kd(temperature: float) -> None:
    # Paper Eq. (1)-(3): KL(p_T ‖ p_S) = TCKD + (1 − p_t^T) · NCKD, per sample.
    s, t = torch.randn(16, 7) * 2, torch.randn(16, 7) * 2
    y = torch.randint(0, 7, (16,))
    tckd, nckd = dkd_parts(s, t, y, temperature)
    p_t = F.softmax(t / temperature, 1).gather(1, y.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(tckd + (1 - p_t) * nckd, kl_divergence(t, s, temperature), rtol=1e-4, atol=1e-6)
    # With α = 1 and β = 1 − p_t it is KD itself (here β varies per row, so compare per row).
    assert (tckd >= -1e-7).all() and (nckd >= -1e-7).all()


def test_dkd_is_zero_for_equal_logits_and_never_nan_with_extreme_logits() -> None:
    z = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    assert dkd_loss(z, z.clone(), y).item() == pytest.approx(0.0, abs=1e-6)
    # Probabilities that underflow to exactly 0 (and p_t = 1) in float32.
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[-1e4, 1e4, 0.0], [1e4, -1e4, -1e4], [3e3, 0.0, -3e3]])
    yy = torch.tensor([0, 1, 2])
    for T in (0.5, 1.0, 4.0):
        loss = dkd_loss(s, t, yy, temperature=T)
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(g).all()


def test_dkd_gradient_matches_autograd_of_the_naive_formula() -> None:
    s = torch.randn(3, 4, requires_grad=True)
    t, y, T = torch.randn(3, 4), torch.tensor([1, 0, 3]), 2.0
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    mask = F.one_hot(y, 4).bool()
    bs = torch.stack([ps[mask], 1 - ps[mask]], 1)
    bt = torch.stack([pt[mask], 1 - pt[mask]], 1)
    tckd = (bt * (bt.log() - bs.log())).sum(1)
    hs = ps[~mask].view(3, 3) / (1 - ps[mask]).view(3, 1)
    ht = pt[~mask].view(3, 3) / (1 - pt[mask]).view(3, 1)
    nckd = (ht * (ht.log() - hs.log())).sum(1)
    naive = T * T * (0.5 * tckd + 3.0 * nckd).mean()
    ours = dkd_loss(s, t, y, alpha=0.5, beta=3.0, temperature=T)
    assert ours.item() == pytest.approx(naive.item(), rel=1e-5)
    g1, = torch.autograd.grad(ours, s)
    g2, = torch.autograd.grad(naive, s)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-7)


def test_dkd_does_not_backpropagate_into_the_teacher() -> None:
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    dkd_loss(s, t, torch.tensor([0, 1, 2])).backward()
    assert t.grad is None and s.grad is not None
