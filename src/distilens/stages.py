"""The stages after training: evaluate, save predictions, explain (images, tables, text).

``pipeline.run`` calls them in order on rank 0; ``distilens explain RUN`` reuses the explain
stage on a finished run. The explain stage itself is :func:`distilens.explain.explain_stage`,
the same for every kind of data; this module only builds what it explains from the bundle.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from . import distributed as _dist
from ._version import __version__
from .config import RunConfig
from .data import DataBundle
from .distill import SoftLabelCache
from .evaluate import cost_metrics, predict_logits, prediction_metrics
from .explain import ExplainInputs, choose_methods
from .explain import explain_stage as run_explain_stage
from .io import atomic_write
from .text_pipeline import text_explain_inputs

__all__ = ["explain_inputs", "explain_methods", "explain_stage", "evaluate_models", "save_predictions", "environment"]


def explain_inputs(bundle: DataBundle) -> ExplainInputs:
    """The test split as teacher and student read it, and how their maps meet (the data modality's part)."""
    if bundle.spec.kind == "text":  # each model's own token ids of the test texts, compared on words
        return text_explain_inputs(bundle)
    return ExplainInputs.from_split(bundle.test, class_names=bundle.spec.class_names)


def explain_methods(
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module
) -> tuple[list[str], dict[str, str]]:
    """Explainers to run, checked before any training, and those left out with the reason
    (:func:`distilens.explain.choose_methods` on this bundle's test split)."""
    explicit = "methods" in cfg.explain.model_fields_set
    return choose_methods(cfg.explain.methods, teacher, student, explain_inputs(bundle), explicit=explicit)


def evaluate_models(bundle: DataBundle, teacher: nn.Module, student: nn.Module, baseline: nn.Module | None) -> dict[str, Any]:
    y = bundle.test.targets
    t_logits = predict_logits(teacher, bundle.teacher_split("test"))
    metrics: dict[str, Any] = {
        "dataset": {"name": bundle.name, "num_classes": bundle.spec.num_classes, **bundle.sizes(), **bundle.loading()},
        "teacher": {**prediction_metrics(t_logits, y), **cost_metrics(teacher, bundle.teacher_spec or bundle.spec)},
    }
    for role, model in (("student", student), ("baseline", baseline)):
        if model is not None:
            logits = predict_logits(model, bundle.test)
            metrics[role] = {**prediction_metrics(logits, y, t_logits), **cost_metrics(model, bundle.spec)}
    t, s = metrics["teacher"], metrics["student"]
    metrics["compression"] = {
        "params_ratio": round(t["params"] / s["params"], 2),
        "flops_ratio": round(t["flops"] / max(1, s["flops"]), 2),
        "speedup_batch1": round(t["latency_ms"]["batch1"] / s["latency_ms"]["batch1"], 2),
        "speedup_batch64": round(t["latency_ms"]["batch64"] / s["latency_ms"]["batch64"], 2),
    }
    return metrics


def explain_stage(
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module, methods: list[str], folder: Path,
    others: dict[str, nn.Module] | None = None,  # evidence (issue 15): baseline, plain_kd, teacher_reseed, init
) -> dict[str, Any]:
    """Run :func:`distilens.explain.explain_stage` on the test split; the metrics block is returned."""
    return run_explain_stage(teacher, student, explain_inputs(bundle), methods, folder, config=cfg.explain, seed=cfg.seed,
                             others=others)


def save_predictions(folder: Path, bundle: DataBundle, cache: SoftLabelCache, models: dict[str, nn.Module | None]) -> None:
    """Test logits of every model and the teacher's training soft labels, for the report.

    ``cache`` may also cover transfer copies appended after ``bundle.train``'s rows; only the
    training rows' soft labels are kept.
    """
    tensors = {"test/targets": bundle.test.targets, "train/targets": bundle.train.targets,
               "train/teacher": cache.logits[: len(bundle.train)].detach().cpu().contiguous()}
    for role, model in models.items():
        if model is not None:
            tensors[f"test/{role}"] = predict_logits(model, bundle.teacher_split("test") if role == "teacher" else bundle.test)
    atomic_write(folder / "predictions.safetensors", lambda tmp: save_file(tensors, tmp))


def environment(device: torch.device) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "distilens": __version__,
        "device": str(device),
        "processes": str(_dist.world().size),
        "platform": platform.platform(),
    }
