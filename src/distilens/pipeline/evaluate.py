"""The evaluate stage: test logits of every model, computed once; prediction metrics and model cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..distill import SoftLabelCache
from ..evaluate import cost_metrics, latency_speedup, measure_latencies, predict_logits, prediction_metrics
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
        latency: How latency was measured (threads, load average, rounds, order), for
            metrics.json's ``latency`` block.
    """

    models: dict[str, dict[str, Any]]
    predictions: Predictions | None = field(default=None, repr=False)
    reference: dict[str, Any] | None = None
    latency: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``teacher``, ``student``, ``baseline``, ``compression`` (and ``reference``) of metrics.json."""
        out = {**{r: self.models[r] for r in ROLES if r in self.models}, "compression": compression(self.models)}
        return {**out, "reference": self.reference} if self.reference is not None else out

    def latency_json(self) -> dict[str, Any]:
        """``latency`` of metrics.json (how latency was measured: threads, load average, rounds), last in the file."""
        return {"latency": self.latency} if self.latency else {}

    @classmethod
    def from_json(cls, metrics: dict[str, Any], predictions: Predictions | None = None) -> "EvaluateResult":
        """The result that wrote ``metrics`` (metrics.json) back."""
        return cls({r: metrics[r] for r in ROLES if r in metrics}, predictions, metrics.get("reference"),
                   dict(metrics.get("latency", {})))


def compression(models: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """How much smaller and faster the student is than the teacher.

    A speed-up is ``None`` when the two latencies' interquartile ranges overlap (a noisy
    machine: :func:`~distilens.evaluate.latency_speedup`).
    """
    t, s = models["teacher"], models["student"]
    return {
        "params_ratio": round(t["params"] / s["params"], 2),
        "flops_ratio": round(t["flops"] / max(1, s["flops"]), 2),
        "speedup_batch1": latency_speedup(t, s, "batch1"),
        "speedup_batch64": latency_speedup(t, s, "batch64"),
    }


def evaluate_stage(
    ctx: RunContext, data: DataResult, teacher: nn.Module, students: dict[str, nn.Module], cache: SoftLabelCache
) -> EvaluateResult:
    """Run every model once on the test split (the teacher on its own view), score, save predictions.safetensors.

    ``cache`` may also cover transfer copies appended after the training rows; only the
    training rows' soft labels are kept (the report's class-similarity figure). A cache of K
    stored augmented views keeps all K·N rows (view-major), each with its image's label: the
    soft labels the student learned from, not view 0's alone.
    """
    bundle = data.bundle
    y = bundle.test.targets
    logits = {"teacher": predict_logits(teacher, bundle.for_teacher().test)}
    timed = {"teacher": (teacher, bundle.for_teacher().spec), **{role: (m, bundle.spec) for role, m in students.items()}}
    models = {"teacher": {**prediction_metrics(logits["teacher"], y), **cost_metrics(teacher, timed["teacher"][1], latency=False)}}
    for role, model in students.items():
        logits[role] = predict_logits(model, bundle.test)
        models[role] = {**prediction_metrics(logits[role], y, logits["teacher"]), **cost_metrics(model, bundle.spec, latency=False)}
    latency = measure_latencies(timed)  # interleaved, so a busy machine slows every model alike
    for role, block in latency["models"].items():
        models[role].update(block)
    views = cache.views  # 1 for a plain cache (with or without transfer copies)
    train_teacher = cache.logits[: views * len(bundle.train)].detach().cpu()
    predictions = Predictions(y, logits, bundle.train.targets.repeat(views), train_teacher)
    predictions.save(ctx.staging / PREDICTIONS)
    return EvaluateResult(models, predictions, data.modality.reference(bundle, seed=ctx.config.seed), latency["environment"])
