"""Explain a teacher and a student on the same inputs, for the same class, and compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .agreement import agreement_scores, means, summarize
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
        scores: per-sample agreement, name → (N,): ``spearman``, ``kendall``, ``pearson``,
            ``topk_iou``, ``cosine``, and ``ssim`` for image maps.
    """

    method: str
    inputs: Tensor
    targets: Tensor
    teacher_pred: Tensor
    student_pred: Tensor
    teacher_maps: Tensor
    student_maps: Tensor
    scores: dict[str, Tensor]

    def summary(self, *, seed: int = 0) -> dict[str, Any]:
        """Mean agreement (and bootstrap 95% intervals), and how often the predictions agree.

        ``agreement`` holds one float (or ``None``) per score — metrics.json's flat form;
        ``agreement_ci95`` the ``[low, high]`` intervals and ``agreement_undefined`` how many
        samples had an undefined (NaN) score.
        """
        same = self.teacher_pred == self.student_pred
        stats = summarize(self.scores, seed=seed)
        return {
            "method": self.method,
            "n_samples": int(self.targets.shape[0]),
            "agreement": means(stats),
            "agreement_ci95": {k: [v["ci_low"], v["ci_high"]] for k, v in stats.items()},
            "agreement_undefined": {k: v["n_nan"] for k, v in stats.items()},
            "same_prediction": float(same.float().mean()),
        }

    _TENSORS = ("inputs", "targets", "teacher_pred", "student_pred", "teacher_maps", "student_maps")

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat ``name → tensor`` dict (for a safetensors file), keys prefixed by the method."""
        # clone(): safetensors refuses tensors that share memory (targets may be teacher_pred).
        out = {f"{self.method}/{k}": getattr(self, k).detach().cpu().clone() for k in self._TENSORS}
        out.update({f"{self.method}/score/{k}": v.detach().cpu().clone() for k, v in self.scores.items()})
        return out

    @classmethod
    def from_tensors(cls, method: str, tensors: dict[str, Tensor]) -> "Comparison":
        """Inverse of :meth:`to_tensors` for one method."""
        prefix = f"{method}/score/"
        scores = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        return cls(method=method, scores=scores, **{k: tensors[f"{method}/{k}"] for k in cls._TENSORS})

    def galleries(self, n: int = 8) -> dict[str, list[int]]:
        """Rows worth a look, as positions in this comparison.

        ``same_class_disagree``: both models predict the same class but explain it most
        differently — "right answer, other reasons" — lowest Spearman first (undefined
        scores last). ``different_class``: the models predict different classes, lowest
        Spearman first.
        """
        rho = self.scores["spearman"].clone()
        rho[torch.isnan(rho)] = float("inf")  # undefined agreement: shown last
        same = self.teacher_pred == self.student_pred
        order = torch.argsort(rho, stable=True)
        return {
            "same_class_disagree": [int(i) for i in order if same[i]][:n],
            "different_class": [int(i) for i in order if not same[i]][:n],
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
        >>> cmp.summary()["agreement"]["spearman"], cmp.galleries()["same_class_disagree"]
    """
    t_pred = predicted_class(teacher, inputs.to(next(teacher.parameters()).device)).cpu()
    s_pred = predicted_class(student, inputs.to(next(student.parameters()).device)).cpu()
    target = t_pred if target is None else torch.as_tensor(target).cpu()
    t_maps = attribute(teacher, inputs, target, method=method, **options)
    s_maps = attribute(student, inputs, target, method=method, **options)
    return Comparison(
        method=method,
        inputs=inputs,
        targets=target,
        teacher_pred=t_pred,
        student_pred=s_pred,
        teacher_maps=t_maps,
        student_maps=s_maps,
        scores=agreement_scores(t_maps, s_maps, topk),
    )
