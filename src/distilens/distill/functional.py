"""Distillation losses as pure functions of tensors.

Every function takes logits (never probabilities), computes in float32 whatever the input
dtype (the soft-max of a KD term is not safe in fp16), and returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_loss", "ce_loss", "kl_divergence"]


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
