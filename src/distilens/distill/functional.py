"""Distillation losses as pure functions of tensors.

Every function takes logits (never probabilities), computes in float32 whatever the input
dtype (the soft-max of a KD term is not safe in fp16), and returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_loss", "ce_loss", "kl_divergence", "dkd_parts", "dkd_loss", "leaf_kd_loss"]


def kl_divergence(p_logits: Tensor, q_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-sample KL(p ‖ q) between the soft-max distributions of two logit tensors.

    Args:
        p_logits: (B, C) logits of the reference distribution p (e.g. the teacher).
        q_logits: (B, C) logits of the approximating distribution q (e.g. the student).
        temperature: Both logit tensors are divided by it before the soft-max.

    Returns:
        (B,) tensor of KL divergences in nats, each ≥ 0.
    """
    log_p = F.log_softmax(p_logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(q_logits.float() / temperature, dim=-1)
    # p·(log p − log q), with 0·log 0 = 0 handled by exp(log_p) being exactly 0 there.
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton et al. 2015: T² · KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch.

    The T² factor keeps the gradient's scale independent of T, so the KD term and a
    cross-entropy term can be mixed with weights that do not need re-tuning per T
    ("Distilling the Knowledge in a Neural Network", Hinton, Vinyals & Dean, 2015, §2).

    Args:
        student_logits: (B, C) raw scores of the student.
        teacher_logits: (B, C) raw scores of the teacher (no gradient flows into them).
        temperature: Softening temperature T > 0.

    Returns:
        Scalar tensor (batch mean, "batchmean" in PyTorch's terms).

    Example:
        >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
        >>> float(kd_loss(t, t)) == 0.0
        True
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    kl = kl_divergence(teacher_logits.detach(), student_logits, temperature)
    return kl.mean() * (temperature * temperature)


def ce_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy with hard labels, batch mean.

    Args:
        logits: (B, C) raw scores.
        targets: (B,) int64 class indices.
        label_smoothing: Szegedy et al. 2016 label smoothing ε in [0, 1).
    """
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def dkd_parts(
    student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, temperature: float = 4.0
) -> tuple[Tensor, Tensor]:
    """Per-sample TCKD and NCKD of decoupled KD (Zhao et al. 2022), without the T² factor.

    TCKD = KL(b_T ‖ b_S) between the binary distributions b = (p_t, 1 − p_t) of the target
    class t; NCKD = KL(p̂_T ‖ p̂_S) between the distributions over the non-target classes
    (p̂_i = p_i / (1 − p_t), i ≠ t). Classical KD decomposes as
    ``KL(p_T ‖ p_S) = TCKD + (1 − p_t^T) · NCKD`` (the paper's Eq. 1–3).

    Everything is computed from log-softmax values, never from ``log(p)``, so a class whose
    probability underflows to 0 gives neither ``inf`` nor ``NaN`` (value or gradient).

    Args:
        student_logits: (B, C) raw scores of the student, C ≥ 2.
        teacher_logits: (B, C) raw scores of the teacher (detached here).
        targets: (B,) int64 ground-truth classes.
        temperature: Softening temperature T > 0.

    Returns:
        ``(tckd, nckd)``, two (B,) tensors of KL divergences in nats.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape[-1] < 2:
        raise ValueError("decoupled KD needs at least 2 classes")
    zs = student_logits.float() / temperature
    zt = teacher_logits.detach().float() / temperature
    gt = F.one_hot(targets.to(zs.device), zs.shape[-1]).bool()  # (B, C)
    tckd = _binary_kl(*_target_log_probs(zt, gt), *_target_log_probs(zs, gt))
    # Non-target distributions: the target entry is removed with -inf before the soft-max
    # and its (-inf) log-probability zeroed afterwards, so 0·(−inf) never appears.
    log_ht = F.log_softmax(zt.masked_fill(gt, float("-inf")), dim=-1).masked_fill(gt, 0.0)
    log_hs = F.log_softmax(zs.masked_fill(gt, float("-inf")), dim=-1).masked_fill(gt, 0.0)
    nckd = (log_ht.exp().masked_fill(gt, 0.0) * (log_ht - log_hs)).sum(dim=-1)
    return tckd, nckd


def _target_log_probs(z: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """(log p_t, log(1 − p_t)) per row, both from log-sum-exps (exact when p_t → 0 or 1)."""
    lse_all = torch.logsumexp(z, dim=-1)
    log_pt = (z * gt).sum(dim=-1) - lse_all
    log_rest = torch.logsumexp(z.masked_fill(gt, float("-inf")), dim=-1) - lse_all
    return log_pt, log_rest


def _binary_kl(log_p1: Tensor, log_p0: Tensor, log_q1: Tensor, log_q0: Tensor) -> Tensor:
    return log_p1.exp() * (log_p1 - log_q1) + log_p0.exp() * (log_p0 - log_q0)


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    """Decoupled KD (Zhao et al. 2022, "Decoupled Knowledge Distillation", CVPR): T²·(α·TCKD + β·NCKD).

    Defaults are the paper's CIFAR-100 settings (α = 1, β = 8, T = 4). The reference code
    (megvii-research/mdistiller) averages each KL over the batch and scales by T², as here;
    its linear warm-up of the loss weight lives in the :class:`~distilens.distill.objectives.DKD`
    module, not in this pure function.

    Args:
        student_logits: (B, C) raw scores of the student.
        teacher_logits: (B, C) raw scores of the teacher (no gradient flows into them).
        targets: (B,) int64 ground-truth classes.
        alpha: Weight of the target-class term TCKD.
        beta: Weight of the non-target-class term NCKD.
        temperature: Softening temperature T > 0.

    Returns:
        Scalar tensor (batch mean).

    Example:
        >>> s, t, y = torch.randn(4, 10), torch.randn(4, 10), torch.randint(0, 10, (4,))
        >>> float(dkd_loss(t, t, y))
        0.0
    """
    tckd, nckd = dkd_parts(student_logits, teacher_logits, targets, temperature)
    return (alpha * tckd + beta * nckd).mean() * (temperature * temperature)


def leaf_kd_loss(leaf_log_paths: Tensor, leaf_log_probs: Tensor, target_probs: Tensor) -> Tensor:
    """Frosst & Hinton 2017: Σ_ℓ P^ℓ(x) · (−Σ_k T_k log Q^ℓ_k), the path-weighted leaf cross-entropy, batch mean.

    The soft decision tree's own loss ("Distilling a Neural Network Into a Soft Decision
    Tree", §2): each leaf ℓ's class distribution Q^ℓ is scored against the targets T and
    weighted by the probability P^ℓ(x) of reaching it. By Jensen it bounds the cross-entropy
    of the path mixture Σ_ℓ P^ℓ Q^ℓ from above, with equality when the routing is hard.

    Args:
        leaf_log_paths: (B, L) log P^ℓ(x) of every leaf (rows log-sum-exp to 0).
        leaf_log_probs: (L, C) log Q^ℓ of every leaf.
        target_probs: (B, C) target distribution T (soft teacher labels or one-hot labels).

    Returns:
        Scalar tensor (batch mean).

    Example:
        >>> loss = leaf_kd_loss(tree.log_path_probs(x)[0], tree.leaf_log_probs(), soft_targets)
    """
    ce_per_leaf = -(target_probs.float() @ leaf_log_probs.float().T)  # (B, C) @ (C, L) -> (B, L)
    return (leaf_log_paths.float().exp() * ce_per_leaf).sum(1).mean()
