"""The stages after training: evaluate, save predictions, explain (images, tables, text).

``pipeline.run`` calls them in order on rank 0; ``distilens explain RUN`` reuses the explain
stage on a finished run.
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
from .errors import ConfigError, DistilensError
from .evaluate import cost_metrics, predict_logits, prediction_metrics
from .explain import EXPLAINERS
from .explain.stage import explain_models, inapplicable_reason
from .io import atomic_write
from .text_pipeline import explain_text_stage, text_explain_methods

__all__ = ["explain_methods", "explain_stage", "evaluate_models", "save_predictions", "environment"]


def explain_methods(
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module
) -> tuple[list[str], dict[str, str]]:
    """Explainers to run, checked before any training, and those left out with the reason.

    Methods named explicitly in the config must apply to this data and these models; from
    the default list, those that do not apply (gradcam on tables, MLPs or TorchScript) are
    left out and reported.
    """
    explicit = "methods" in cfg.explain.model_fields_set
    if bundle.spec.kind == "text":  # token explainers, compared word by word
        return text_explain_methods(cfg, teacher, student)
    methods, skipped = [], {}
    for m in cfg.explain.methods:
        try:
            EXPLAINERS.get(m)
        except DistilensError as exc:
            raise ConfigError(f"explain.methods: {exc}") from None
        reason = inapplicable_reason(m, (teacher, student), bundle.train.inputs[:1])
        if reason is None:
            methods.append(m)
        elif explicit:
            raise ConfigError(f"explain.methods: '{m}' {reason}; use integrated_gradients or saliency")
        else:
            skipped[m] = reason
    if not methods and not explicit:
        # None of the defaults applies (a soft-tree student): occlusion needs only forwards.
        methods = ["occlusion"]
    return methods, skipped


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
    cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module, methods: list[str], folder: Path
) -> dict[str, Any]:
    """Run the explain stage; the maps go to explanations.safetensors, the numbers are returned.

    Text: word-level comparisons go to explanations/text.json instead.
    """
    if bundle.spec.kind == "text":
        return explain_text_stage(cfg, bundle, teacher, student, methods, folder)
    e = cfg.explain
    comparisons, block = explain_models(
        teacher, student, bundle.test, methods, e.n_samples, seed=cfg.seed, steps=e.steps,
        sanity=e.sanity, sanity_samples=e.sanity_samples,
    )
    tensors: dict[str, torch.Tensor] = {}
    for cmp in comparisons:
        tensors.update(cmp.to_tensors())
    atomic_write(folder / "explanations.safetensors", lambda tmp: save_file(tensors, tmp))
    return block


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
