"""Text distillation losses as pure functions: self-attention transfer (MiniLM / TinyBERT).

Companion of :mod:`distill.feature_losses` for transformer students. Computes in float32
and returns a scalar (batch mean).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.tap import group_heads

__all__ = ["attention_kd_loss"]


def attention_kd_loss(student_attention: Tensor, teacher_attention: Tensor, mask: Tensor, groups: int = 1) -> Tensor:
    """KL(teacher ‖ student) between self-attention distributions, per query row.

    MiniLM (Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers", NeurIPS, §3.1) transfers the last layer's
    attention distributions with KL(A_T ‖ A_S) per head and query, averaged over heads and
    positions; TinyBERT (Jiao et al. 2020, EMNLP Findings, Eq. 7) matches the same maps
    with MSE. Both need the teacher and the student to have the same number of heads. Here
    both sides are first averaged into ``groups`` groups of consecutive heads (a mean of
    distributions is a distribution): ``groups = H_s = H_t`` is the paper's per-head loss,
    ``groups = 1`` compares the head-averaged maps, which works for any head counts.

    For each sample, the KL of every (group, non-pad query) row is taken over the non-pad
    keys and averaged over groups and non-pad queries; the batch loss is the mean over
    samples, so a batch gives the mean of its per-sample losses. Rows and keys at padded
    positions are ignored, and 0·log 0 counts as 0.

    Args:
        student_attention: (B, H_s, L, L) post-softmax attention of the student's last layer.
        teacher_attention: (B, H_t, L, L) the teacher's, or already grouped (B, groups, L, L).
        mask: (B, L) bool, True at real (non-pad) tokens; the same tokens for both models.
        groups: Head groups G; must divide H_s and H_t.

    Returns:
        Scalar float32 loss, ≥ 0; 0 when the grouped maps are equal.

    Example:
        >>> loss = attention_kd_loss(student.attention_maps(ids)[-1], teacher_attn, ids != pad_id, groups=1)
    """
    if student_attention.dim() != 4 or teacher_attention.dim() != 4:
        raise ValueError(
            f"attention maps must be (B, H, L, L); got {tuple(student_attention.shape)} (student) and "
            f"{tuple(teacher_attention.shape)} (teacher)"
        )
    if student_attention.shape[-2:] != teacher_attention.shape[-2:] or student_attention.shape[0] != teacher_attention.shape[0]:
        raise ValueError(
            f"attention_kd needs the same token sequences for teacher and student (the same tokenizer and "
            f"data.max_length); got student {tuple(student_attention.shape)} and teacher {tuple(teacher_attention.shape)}"
        )
    expected = (student_attention.shape[0], student_attention.shape[-1])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask must be (B, L) = {expected}, got {tuple(mask.shape)}")
    s = group_heads(student_attention.float(), groups)
    t = group_heads(teacher_attention.float(), groups)
    keys = mask[:, None, None, :]  # (B, L) -> (B, 1, 1, L)
    valid = keys & (t > 0)
    # t·(log t − log s) over real keys where t > 0; s is clamped so a 0 where t > 0 stays finite.
    log_ratio = torch.log(t.clamp_min(torch.finfo(torch.float32).tiny)) - torch.log(
        s.clamp_min(torch.finfo(torch.float32).tiny)
    )
    rows = torch.where(valid, t * log_ratio, torch.zeros_like(t)).sum(-1)  # (B, G, L): KL per query row
    queries = mask.to(rows.dtype)  # (B, L)
    per_sample = (rows * queries[:, None, :]).sum((1, 2)) / (queries.sum(1).clamp_min(1.0) * s.shape[1])
    return per_sample.mean()
