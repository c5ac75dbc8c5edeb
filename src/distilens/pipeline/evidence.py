"""The evidence stage (issue 15): the extra models that judge the student's explanations, and its paired numbers.

* :func:`evidence_stage` trains (or reads back on ``--resume``) what :mod:`distilens.controls`
  decides: the plain-KD control of an explanation-guided run, the second teacher and the
  untrained student of ``explain.references``. The label-only baseline is the students stage's.
* :func:`evidence_metrics` adds to metrics.json ``simple_models`` (what the teacher must beat),
  ``fidelity`` (student − controls per test sample, paired) and ``plain_kd`` (its prediction metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import controls, fidelity, simple_models
from ..distill import SoftLabelCache, build_objectives
from ..evaluate import prediction_metrics
from ..models import load_model, load_teacher, save_model
from .context import RunContext
from .data import DataResult
from .evaluate import EvaluateResult
from .models import build_student, build_teacher
from .training import ModelFiles, StudentsResult, initialise, run_augment, train_student, train_teacher

__all__ = ["EvidenceResult", "evidence_stage", "evidence_metrics"]


@dataclass
class EvidenceResult:
    """Role → model for the explain stage's ``others`` (``baseline``, ``plain_kd``, ``teacher_reseed``, ``init``)."""

    models: dict[str, nn.Module]
    history: list[dict[str, Any]] = field(default_factory=list)

    def students(self) -> dict[str, nn.Module]:
        """The extra models evaluated like the students (``plain_kd`` where trained)."""
        return {r: m for r, m in self.models.items() if r == "plain_kd"}

    def to_json(self) -> dict[str, Any]:
        return {}


def evidence_stage(
    ctx: RunContext, data: DataResult, teacher: nn.Module, students: StudentsResult, cache: SoftLabelCache
) -> EvidenceResult:
    """Train the controls and reference points asked for; ``controls.check_references`` ran before training."""
    cfg, history = ctx.config, []
    out: dict[str, nn.Module] = {"baseline": students.baseline} if students.baseline is not None else {}
    plain = controls.plain_kd_specs(controls.loss_specs(cfg))
    if plain is not None:
        with ctx.timings.timed("plain_kd"):
            model = build_student(cfg, data)
            initialise(ctx, data, model, teacher)
            online = teacher if cfg.distill.teacher_views == "online" and run_augment(cfg) is not None else None  # as the student
            train_student(ctx, ModelFiles("plain_kd", ctx.staging), model, data.transfer, build_objectives(plain),
                          None if online is not None else cache, history, online)
            out["plain_kd"] = model
    if "teacher_reseed" in cfg.explain.references:
        with ctx.timings.timed("teacher_reseed"):
            out["teacher_reseed"] = _second_teacher(ctx, data, history)
    if "init" in cfg.explain.references:  # where the students started: the student's seed (and student.init)
        out["init"] = build_student(cfg, data)
        initialise(ctx, data, out["init"], teacher)
        out["init"].to(ctx.device)
        if ctx.world.main:
            save_model(out["init"], ctx.staging / "init.safetensors", arch=cfg.student.arch, args=cfg.student.args,
                       spec=data.bundle.spec)
    return EvidenceResult(out, history)


def _second_teacher(ctx: RunContext, data: DataResult, history: list[dict[str, Any]]) -> nn.Module:
    """Loaded from ``explain.reference_teacher``, or trained like the teacher from :func:`controls.reseed`."""
    cfg, files = ctx.config, ModelFiles("teacher_reseed", ctx.staging)
    spec = data.bundle.for_teacher().spec
    if cfg.explain.reference_teacher:
        model = load_teacher(cfg.explain.reference_teacher, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=spec,
                             trust_torchscript=cfg.teacher.trust_torchscript).to(ctx.device)
        if ctx.world.main:
            save_model(model, files.weights, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=spec)
        return model
    if files.finished():
        history.extend(files.previous_history())
        return load_model(files.weights)[0].to(ctx.device)
    model = build_teacher(cfg, data, controls.reseed(cfg.seed))
    history.extend(train_teacher(ctx, data, files, model, controls.reseed(cfg.seed))[0])
    return model


def evidence_metrics(ctx: RunContext, data: DataResult, evaluation: EvaluateResult) -> dict[str, Any]:
    """``simple_models``, ``fidelity`` (student − controls per test sample) and ``plain_kd`` of metrics.json."""
    out: dict[str, Any] = {"simple_models": simple_models.simple_models(data.bundle)}
    preds = evaluation.predictions
    if preds is None:
        return out
    logits = dict(preds.logits)
    out["fidelity"] = fidelity.fidelity_block(logits["teacher"], preds.targets, logits, seed=ctx.config.seed)
    if "plain_kd" in logits:
        out["plain_kd"] = prediction_metrics(logits["plain_kd"], preds.targets, logits["teacher"])
    return out
