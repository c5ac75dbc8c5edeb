"""Feature and explanation losses as pure functions of tensors.

Companions of :mod:`distill.functional` for terms that compare intermediate feature maps
(FitNets hints, attention transfer) or explanation maps (Grad-CAM, input gradients) of the
teacher and the student. All compute in float32 and return a scalar (batch mean).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "match_spatial",
    "hint_loss",
    "attention_map",
    "attention_transfer_loss",
    "explanation_alignment_loss",
    "input_gradient_alignment_loss",
]


def match_spatial(x: Tensor, size: tuple[int, ...]) -> Tensor:
    """Bilinearly resize the trailing two dims of ``x`` ((B, C, h, w) or (B, h, w)) to ``size``.

    Returns ``x`` itself when the sizes already agree, so same-size layers pay nothing.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    squeeze = x.dim() == 3
    y = x.unsqueeze(1) if squeeze else x  # (B, h, w) -> (B, 1, h, w)
    y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
    return y.squeeze(1) if squeeze else y


def hint_loss(adapted_student: Tensor, teacher_features: Tensor) -> Tensor:
    """FitNets hint loss (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", ICLR).

    Mean squared error between the student's hint-layer output passed through the learned
    regressor (the caller's adapter) and the teacher's guided-layer output. The paper writes
    ½‖u_h − r‖² summed per sample; we take the element-wise mean, as the reference
    re-implementation in mdistiller does, so the scale does not grow with the map's size.
    A student map of another spatial size is resized to the teacher's first.

    Args:
        adapted_student: (B, C_t, h, w) or (B, C_t) student features after the adapter.
        teacher_features: (B, C_t, H, W) or (B, C_t) teacher features (detached here).

    Example:
        >>> f = torch.randn(2, 8, 4, 4)
        >>> float(hint_loss(f, f))
        0.0
    """
    t = teacher_features.detach().float()
    s = adapted_student.float()
    if s.dim() == 4:
        s = match_spatial(s, t.shape[-2:])
    if s.shape != t.shape:
        raise ValueError(f"hint: adapted student features {tuple(s.shape)} do not match the teacher's {tuple(t.shape)}")
    return F.mse_loss(s, t)


def attention_map(features: Tensor, p: float = 2.0) -> Tensor:
    """Spatial attention Q = Σ_c |A_c|^p, flattened and L2-normalised per sample.

    Zagoruyko & Komodakis 2017 ("Paying More Attention to Attention", ICLR), F^p_sum.

    Args:
        features: (B, C, H, W) activations A.
        p: Exponent (the paper uses 2).

    Returns:
        (B, H*W) unit-norm rows.
    """
    q = features.float().abs().pow(p).sum(dim=1)  # (B, C, H, W) -> (B, H, W)
    return F.normalize(q.flatten(1), dim=1)  # (B, H, W) -> (B, H*W)


def attention_transfer_loss(
    student_features: Tensor, teacher_features: Tensor, beta: float = 1000.0, p: float = 2.0
) -> Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017): β/2 · mean((Q_s − Q_t)²).

    The paper writes β/2 · ‖Q_s/‖Q_s‖ − Q_t/‖Q_t‖‖_p per layer; the reference code
    (szagoruyko/attention-transfer, ``at_loss``) takes the *mean over batch and positions of
    the squared difference* of the normalised maps, ``(at(x) - at(y)).pow(2).mean()``, with
    β = 1000 and the β/2 factor in the training script. We follow the reference code, whose
    β was tuned for that reduction. Before normalising, the student's (B, H, W) attention is
    resized bilinearly to the teacher's grid when the two differ.

    Args:
        student_features: (B, C_s, h, w) student activations.
        teacher_features: (B, C_t, H, W) teacher activations (detached here).
        beta: β of the paper (1000 in the reference code).
        p: Exponent of the attention map.

    Example:
        >>> a = torch.randn(2, 4, 3, 3)
        >>> float(attention_transfer_loss(a, 2 * a))
        0.0
    """
    t = teacher_features.detach().float()
    s = student_features.float().abs().pow(p).sum(dim=1)  # (B, h, w)
    s = match_spatial(s, t.shape[-2:])
    q_s = F.normalize(s.flatten(1), dim=1)
    q_t = attention_map(t, p)
    return beta / 2 * (q_s - q_t).pow(2).mean()


def explanation_alignment_loss(student_maps: Tensor, teacher_maps: Tensor, eps: float = 1e-8) -> Tensor:
    """1 − cosine similarity of the flattened explanation maps, batch mean.

    e²KD (Parchami-Araghi et al. 2024, "Good Teachers Explain: Explanation-Enhanced
    Knowledge Distillation", ECCV) adds this term for the teacher's top class. A student
    map on another grid is resized bilinearly to the teacher's.

    Args:
        student_maps: (B, h, w) maps of the student (in the graph, to train through them).
        teacher_maps: (B, H, W) maps of the teacher for the same targets (detached here).
        eps: Guards the cosine of an all-zero map (its similarity is then 0, loss 1).

    Example:
        >>> m = torch.rand(3, 4, 4)
        >>> round(float(explanation_alignment_loss(m, 5 * m)), 6)
        0.0
    """
    t = teacher_maps.detach().float()
    s = match_spatial(student_maps.float(), t.shape[-2:])
    return (1.0 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1, eps=eps)).mean()


def input_gradient_alignment_loss(student_grads: Tensor, teacher_grads: Tensor, eps: float = 1e-12) -> Tensor:
    """Jacobian matching (Srinivas & Fleuret 2018, "Knowledge Transfer with Jacobian Matching", ICML).

    ‖∇ₓs/‖∇ₓs‖₂ − ∇ₓt/‖∇ₓt‖₂‖₂² per sample, batch mean: the squared L2 distance of the
    L2-normalised input gradients of the target score (their §4, Eq. 5, with the
    normalisation they recommend). For unit vectors this equals 2 − 2·cos.

    Args:
        student_grads: (B, *input_shape) ∂y_s/∂x, in the graph (``create_graph=True``).
        teacher_grads: (B, *input_shape) ∂y_t/∂x for the same targets (detached here).
        eps: Guards the normalisation of an all-zero gradient.

    Example:
        >>> g = torch.randn(2, 1, 8, 8)
        >>> round(float(input_gradient_alignment_loss(g, 3 * g)), 6)
        0.0
    """
    s = F.normalize(student_grads.float().flatten(1), dim=1, eps=eps)
    t = F.normalize(teacher_grads.detach().float().flatten(1), dim=1, eps=eps)
    if s.shape != t.shape:
        raise ValueError(f"input gradients differ in shape: {tuple(student_grads.shape)} vs {tuple(teacher_grads.shape)}")
    return (s - t).pow(2).sum(dim=1).mean()
