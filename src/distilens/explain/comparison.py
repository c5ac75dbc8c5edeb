"""What comparing two models' explanations produces: their maps on common units, and the record.

:class:`Aligned` holds both models' maps brought onto the same units by an aligner
(:mod:`.align`): pixels, features or words. :class:`Comparison` is the whole record of one
method on one batch: inputs, targets, predictions, each model's own maps, the aligned maps and
the per-sample agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .agreement import agreement_scores, means, summarize
from .words import masked_agreement

__all__ = ["Aligned", "Comparison"]


@dataclass(frozen=True)
class Aligned:
    """Teacher and student maps of the same N samples on common units.

    Attributes:
        teacher, student: (N, *units) maps, the same shape: (N, 1, H, W) pixels, (N, F)
            features, (N, W) words (each row zero beyond its text's words).
        covered: (N, U) bool, the units each row is compared on (the words both tokenizers
            reach), or ``None`` when every unit counts.
    """

    teacher: Tensor
    student: Tensor
    covered: Tensor | None = None

    def scores(self, topk: float) -> dict[str, Tensor]:
        """Per-sample agreement, name → (N,): :func:`~.agreement.agreement_scores` (with ``ssim``
        for pixel maps), or the same scores on each row's covered units (NaN where none)."""
        if self.covered is None:
            return agreement_scores(self.teacher, self.student, topk)
        return masked_agreement(self.teacher, self.student, self.covered, topk)


@dataclass
class Comparison:
    """Teacher and student explanations of the same inputs and targets.

    Attributes:
        method: Explainer name.
        inputs: (N, *shape) the teacher's explained inputs (token ids for text).
        targets: (N,) the class explained for both models (the teacher's prediction by default).
        teacher_pred, student_pred: (N,) each model's predicted class.
        teacher_maps, student_maps: attributions, shaped as :func:`~.attribute.attribute`
            returns them for each model's own inputs ((N, L_t) and (N, L_s) token scores for text).
        scores: per-sample agreement, name → (N,): ``spearman``, ``kendall``, ``pearson``,
            ``topk_iou``, ``cosine``, and ``ssim`` for image maps.
        aligned: both maps on common units (see :class:`Aligned`); ``None`` when read back
            from explanations.safetensors.
        level: The units compared: ``"pixel"``, ``"feature"`` or ``"word"``.
    """

    method: str
    inputs: Tensor
    targets: Tensor
    teacher_pred: Tensor
    student_pred: Tensor
    teacher_maps: Tensor
    student_maps: Tensor
    scores: dict[str, Tensor]
    aligned: Aligned | None = None
    level: str = "pixel"

    def summary(self, *, seed: int = 0) -> dict[str, Any]:
        """Mean agreement (with bootstrap 95% intervals and the spread), and how often the predictions agree.

        ``agreement`` holds one float (or ``None``) per score — metrics.json's flat form;
        ``agreement_ci95`` the ``[low, high]`` intervals, ``agreement_std`` the standard
        deviation over samples, and ``agreement_undefined`` how many samples had an
        undefined (NaN) score.
        """
        same = self.teacher_pred == self.student_pred
        stats = summarize(self.scores, seed=seed)
        return {
            "method": self.method,
            "n_samples": int(self.targets.shape[0]),
            "agreement": means(stats),
            "agreement_ci95": {k: [v["ci_low"], v["ci_high"]] for k, v in stats.items()},
            "agreement_std": {k: _std(v) for k, v in self.scores.items()},
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


def _std(values: Tensor) -> float | None:
    """Population standard deviation of the defined (non-NaN) values, or ``None``."""
    v = values[~torch.isnan(values)].double()
    return float(v.std(unbiased=False)) if v.numel() else None
