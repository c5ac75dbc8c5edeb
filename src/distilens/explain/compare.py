"""Explain a teacher and a student on the same inputs, for the same class, and compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .agreement import agreement_scores, summarize
from .attribute import attribute, predicted_class

__all__ = ["Comparison", "compare"]


@dataclass
class Comparison:
    """Teacher and student explanations of the same inputs and targets.

    Attributes:
        method: Explainer name.
        inputs: (N, *shape) the explained inputs.
        targets: (N,) the class explained for both models (the teacher's prediction by default).
        teacher_pred, student_pred: (N,) each model's predicted class.
        teacher_maps, student_maps: attributions, shaped as :func:`attribute` returns them.
        scores: per-sample agreement, ``{"spearman": (N,), "topk_iou": (N,), "cosine": (N,)}``.
    """

    method: str
    inputs: Tensor
    targets: Tensor
    teacher_pred: Tensor
    student_pred: Tensor
    teacher_maps: Tensor
    student_maps: Tensor
    scores: dict[str, Tensor]

    def summary(self) -> dict[str, Any]:
        """Mean agreement over samples, and how many samples the two models agree on."""
        same = self.teacher_pred == self.student_pred
        return {
            "method": self.method,
            "n_samples": int(self.targets.shape[0]),
            "agreement": summarize(self.scores),
            "same_prediction": float(same.float().mean()),
        }


def compare(
    teacher: nn.Module,
    student: nn.Module,
    inputs: Tensor,
    method: str = "integrated_gradients",
    target: Tensor | None = None,
    topk: float = 0.1,
    **options: Any,
) -> Comparison:
    """Explain ``teacher`` and ``student`` on ``inputs`` for the same target and score agreement.

    Args:
        teacher: The reference model.
        student: The model under review.
        inputs: (N, *shape) inputs.
        method: Explainer name (``distilens list explainers``).
        target: (N,) classes to explain; default: the teacher's predicted classes.
        topk: Fraction of features in the top-k overlap.
        **options: Passed to the explainer for both models.

    Example:
        >>> cmp = compare(teacher, student, bundle.test.inputs[:64], method="gradcam")
        >>> cmp.summary()["agreement"]["spearman"]
    """
    if target is None:
        target = predicted_class(teacher, inputs.to(next(teacher.parameters()).device)).cpu()
    target = torch.as_tensor(target).cpu()
    t_maps = attribute(teacher, inputs, target, method=method, **options)
    s_maps = attribute(student, inputs, target, method=method, **options)
    return Comparison(
        method=method,
        inputs=inputs,
        targets=target,
        teacher_pred=predicted_class(teacher, inputs.to(next(teacher.parameters()).device)).cpu(),
        student_pred=predicted_class(student, inputs.to(next(student.parameters()).device)).cpu(),
        teacher_maps=t_maps,
        student_maps=s_maps,
        scores=agreement_scores(t_maps, s_maps, topk),
    )
