"""What comparing two models' explanations produces: their maps on common units, and the record.

:class:`Aligned` holds both models' maps brought onto the same units by an aligner
(:mod:`.align`): pixels, features or words. :class:`Comparison` is the whole record of one
method on one batch: inputs, targets, predictions, each model's own maps, the aligned maps and
the per-sample agreement — and, for the controls and reference points explained against the
same teacher maps (the label-only baseline, a second teacher, the untrained student), their
own :class:`ModelMaps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .agreement import agreement_scores, means, summarize
from .words import masked_agreement

__all__ = ["AgreementSummary", "Aligned", "Comparison", "ModelMaps"]


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
class ModelMaps:
    """A further model explained for the same samples and targets as the student, against the same teacher maps.

    Attributes:
        pred: (N,) its predicted class.
        maps: Its attributions, shaped as :func:`~.attribute.attribute` returns them.
        scores: Per-sample agreement with the teacher's maps, name → (N,) (the student's scores).
        aligned: Teacher and this model on the common units (``None`` when read back from a file).
    """

    pred: Tensor
    maps: Tensor
    scores: dict[str, Tensor]
    aligned: Aligned | None = None


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
        others: Role → :class:`ModelMaps` of further models explained against the same
            teacher maps (``baseline``, ``plain_kd``, ``teacher_reseed``, ``init``).
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
    others: dict[str, ModelMaps] = field(default_factory=dict)

    def summary(self, *, seed: int = 0) -> "AgreementSummary":
        """Mean agreement (with bootstrap 95% intervals and the spread), and how often the predictions agree.

        A dict (metrics.json's form) that prints as a table. ``agreement`` holds one float (or
        ``None``) per score; ``agreement_ci95`` the ``[low, high]`` intervals,
        ``agreement_std`` the standard deviation over samples, and ``agreement_undefined``
        how many samples had an undefined (NaN) score. These are the student's; ``models``
        holds the same keys for the student and for every model in :attr:`others`.

        Example:
            >>> cmp.summary()  # doctest: +SKIP
            integrated_gradients · 64 inputs · same prediction on 98.4%
            score      student  95% interval     sd
            spearman   0.452    [0.421, 0.483]   0.121
            ...
            >>> cmp.summary()["agreement"]["spearman"]  # doctest: +SKIP
            0.4521
        """
        out = AgreementSummary(method=self.method, n_samples=int(self.targets.shape[0]))
        out.update(_agreement_summary(self.scores, self.student_pred, self.teacher_pred, seed))
        if self.others:
            out["models"] = {"student": _agreement_summary(self.scores, self.student_pred, self.teacher_pred, seed)} | {
                role: _agreement_summary(m.scores, m.pred, self.teacher_pred, seed) for role, m in self.others.items()
            }
        return out

    def role_scores(self, role: str) -> dict[str, Tensor]:
        """Per-sample agreement with the teacher of ``role`` (``student`` or a key of :attr:`others`)."""
        return self.scores if role == "student" else self.others[role].scores

    def role_maps(self, role: str) -> Tensor:
        """The maps of ``role``: ``teacher``, ``student`` or a key of :attr:`others`."""
        if role in ("teacher", "student"):
            return self.teacher_maps if role == "teacher" else self.student_maps
        return self.others[role].maps

    _TENSORS = ("inputs", "targets", "teacher_pred", "student_pred", "teacher_maps", "student_maps")

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat ``name → tensor`` dict (for a safetensors file), keys prefixed by the method.

        Further models go under ``METHOD/models/ROLE/`` (``pred``, ``maps``, ``score/NAME``).
        """
        # clone(): safetensors refuses tensors that share memory (targets may be teacher_pred).
        out = {f"{self.method}/{k}": getattr(self, k).detach().cpu().clone() for k in self._TENSORS}
        out.update({f"{self.method}/score/{k}": v.detach().cpu().clone() for k, v in self.scores.items()})
        for role, m in self.others.items():
            base = f"{self.method}/models/{role}"
            out.update({f"{base}/pred": m.pred.detach().cpu().clone(), f"{base}/maps": m.maps.detach().cpu().clone()})
            out.update({f"{base}/score/{k}": v.detach().cpu().clone() for k, v in m.scores.items()})
        return out

    @classmethod
    def from_tensors(cls, method: str, tensors: dict[str, Tensor]) -> "Comparison":
        """Inverse of :meth:`to_tensors` for one method."""
        prefix = f"{method}/score/"
        scores = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        others: dict[str, ModelMaps] = {}
        models = f"{method}/models/"
        for key in sorted(k for k in tensors if k.startswith(models) and k.endswith("/pred")):
            role = key[len(models):-len("/pred")]
            base = f"{models}{role}"
            role_scores = {k[len(base) + 7:]: v for k, v in tensors.items() if k.startswith(f"{base}/score/")}
            others[role] = ModelMaps(tensors[key], tensors[f"{base}/maps"], role_scores)
        return cls(method=method, scores=scores, others=others, **{k: tensors[f"{method}/{k}"] for k in cls._TENSORS})

    def galleries(self, n: int = 8, *, control: str = "baseline") -> dict[str, list[int]]:
        """Rows worth a look, as positions in this comparison.

        ``same_class_disagree``: both models predict the same class but explain it most
        differently — "right answer, other reasons" — lowest Spearman first (undefined
        scores last). ``different_class``: the models predict different classes, lowest
        Spearman first. Where ``control`` (the label-only baseline) was explained too:
        ``moved_towards``, the rows where the student's Spearman with the teacher exceeds
        the control's the most (distillation moved the map towards the teacher's), largest
        gain first, and ``moved_away``, the rows where it falls short the most.
        """
        rho = self.scores["spearman"].clone()
        rho[torch.isnan(rho)] = float("inf")  # undefined agreement: shown last
        same = self.teacher_pred == self.student_pred
        order = torch.argsort(rho, stable=True)
        out = {
            "same_class_disagree": [int(i) for i in order if same[i]][:n],
            "different_class": [int(i) for i in order if not same[i]][:n],
        }
        if control in self.others:
            gain = (self.scores["spearman"] - self.others[control].scores["spearman"]).double()
            defined = ~torch.isnan(gain)
            down = torch.argsort(torch.where(defined, gain, torch.zeros_like(gain)), descending=True, stable=True)
            out["moved_towards"] = [int(i) for i in down if defined[i] and gain[i] > 0][:n]
            out["moved_away"] = [int(i) for i in down.flip(0) if defined[i] and gain[i] < 0][:n]
        return out


class AgreementSummary(dict):
    """:meth:`Comparison.summary`'s numbers: a plain dict for code and JSON, a table when printed."""

    def __repr__(self) -> str:
        return self.table()

    __str__ = __repr__

    def table(self) -> str:
        """The scores one per row: each model's mean, the student's 95% interval and spread."""
        models = self.get("models") or {"student": self}
        same = ", ".join(f"{role} {_pct(m.get('same_prediction'))}" for role, m in models.items())
        lines = [f"{self.get('method')} · {self.get('n_samples')} inputs · same prediction as the teacher: {same}"]
        rows = [["score", *models, "95% interval", "sd"]]
        for score, value in (self.get("agreement") or {}).items():
            low, high = (self.get("agreement_ci95") or {}).get(score, [None, None])
            rows.append([score, *(_num(m["agreement"].get(score)) for m in models.values()),
                         f"[{_num(low)}, {_num(high)}]", _num((self.get("agreement_std") or {}).get(score))])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _agreement_summary(scores: dict[str, Tensor], pred: Tensor, teacher_pred: Tensor, seed: int) -> dict[str, Any]:
    """One model's agreement with the teacher: means, bootstrap 95% intervals, spread, NaN counts, same prediction."""
    stats = summarize(scores, seed=seed)
    return {
        "agreement": means(stats),
        "agreement_ci95": {k: [v["ci_low"], v["ci_high"]] for k, v in stats.items()},
        "agreement_std": {k: _std(v) for k, v in scores.items()},
        "agreement_undefined": {k: v["n_nan"] for k, v in stats.items()},
        "same_prediction": float((pred == teacher_pred).float().mean()),
    }


def _std(values: Tensor) -> float | None:
    """Population standard deviation of the defined (non-NaN) values, or ``None``."""
    v = values[~torch.isnan(values)].double()
    return float(v.std(unbiased=False)) if v.numel() else None
