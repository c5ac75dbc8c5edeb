"""The evaluate stage: test logits of every model, computed once; prediction metrics and model cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..distill import SoftLabelCache
from ..evaluate import cost_metrics, predict_logits, prediction_metrics
from ..report.inputs import PREDICTIONS, Predictions
from .context import RunContext
from .data import DataResult

__all__ = ["EvaluateResult", "evaluate_stage", "compression"]

ROLES = ("teacher", "student", "baseline")


@dataclass
class EvaluateResult:
    """Per model, accuracy, agreement with the teacher, KL, ECE and cost; the logits they came from.

    Attributes:
        models: Role → metrics.json block (``teacher``, ``student``, ``baseline`` where run).
        predictions: The test logits every number above was computed from (None when the
            result was read back from metrics.json alone).
        reference: A cheap classical model on the same split (text: TF-IDF + logistic
            regression, :meth:`~distilens.modalities.Modality.reference`); None where the
            kind has none.
    """

    models: dict[str, dict[str, Any]]
    predictions: Predictions | None = field(default=None, repr=False)
    reference: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """``teacher``, ``student``, ``baseline``, ``compression`` (and ``reference``) of metrics.json."""
        out = {**{r: self.models[r] for r in ROLES if r in self.models}, "compression": compression(self.models)}
        return {**out, "reference": self.reference} if self.reference is not None else out

    @classmethod
    def from_json(cls, metrics: dict[str, Any], predictions: Predictions | None = None) -> "EvaluateResult":
        """The result that wrote ``metrics`` (metrics.json) back."""
        return cls({r: metrics[r] for r in ROLES if r in metrics}, predictions, metrics.get("reference"))


def compression(models: dict[str, dict[str, Any]]) -> dict[str, float]:
    """How much smaller and faster the student is than the teacher."""
    t, s = models["teacher"], models["student"]
    return {
        "params_ratio": round(t["params"] / s["params"], 2),
        "flops_ratio": round(t["flops"] / max(1, s["flops"]), 2),
        "speedup_batch1": round(t["latency_ms"]["batch1"] / s["latency_ms"]["batch1"], 2),
        "speedup_batch64": round(t["latency_ms"]["batch64"] / s["latency_ms"]["batch64"], 2),
    }


def evaluate_stage(
    ctx: RunContext, data: DataResult, teacher: nn.Module, students: dict[str, nn.Module], cache: SoftLabelCache
) -> EvaluateResult:
    """Run every model once on the test split (the teacher on its own view), score, save predictions.safetensors.

    ``cache`` may also cover transfer copies appended after the training rows; only the
    training rows' soft labels are kept (the report's class-similarity figure).
    """
    bundle = data.bundle
    y = bundle.test.targets
    logits = {"teacher": predict_logits(teacher, bundle.for_teacher().test)}
    models = {"teacher": {**prediction_metrics(logits["teacher"], y), **cost_metrics(teacher, bundle.for_teacher().spec)}}
    for role, model in students.items():
        logits[role] = predict_logits(model, bundle.test)
        models[role] = {**prediction_metrics(logits[role], y, logits["teacher"]), **cost_metrics(model, bundle.spec)}
    train_teacher = cache.logits[: len(bundle.train)].detach().cpu()
    predictions = Predictions(y, logits, bundle.train.targets, train_teacher)
    predictions.save(ctx.staging / PREDICTIONS)
    return EvaluateResult(models, predictions, data.modality.reference(bundle, seed=ctx.config.seed))
