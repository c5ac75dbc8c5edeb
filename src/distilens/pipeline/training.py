"""The training stages: the teacher, its soft labels, the student and the label-only baseline.

Each model trains into the staging folder (checkpoint every epoch, TensorBoard events where
installed) and is saved as ``ROLE.safetensors`` + ``ROLE.json``. On ``--resume`` a model
whose weights are saved and whose checkpoint is gone is finished: it is read back, not trained.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..data import DataBundle, InputSpec
from ..distill import Objective, SoftLabelCache, fit, fit_teacher, teacher_cache_options
from ..io import atomic_write
from ..models import HFTextClassifier, load_model, save_model
from ..models.text_init import init_embeddings_from_teacher
from ..report.inputs import read_history
from .context import RunContext
from .data import DataResult
from .models import Arch, ModelPlan, build_student

__all__ = [
    "ModelFiles", "TeacherResult", "CacheResult", "StudentsResult", "teacher_stage", "cache_stage", "students_stage",
    "train_teacher", "train_student", "initialise",
]


@dataclass(frozen=True)
class ModelFiles:
    """Where one model of the run keeps its weights, checkpoint and TensorBoard events.

    Attributes:
        role: ``teacher``, ``student`` or ``baseline``.
        folder: The staging folder of the run.
    """

    role: str
    folder: Path

    @property
    def weights(self) -> Path:
        return self.folder / f"{self.role}.safetensors"

    @property
    def checkpoint(self) -> Path:
        """Written after every epoch by ``fit``, which resumes from it."""
        return self.folder / "checkpoints" / f"{self.role}.pt"

    @property
    def tensorboard(self) -> Path | None:
        """TensorBoard events, only where the optional ``tensorboard`` extra is installed."""
        return self.folder / "tb" / self.role if importlib.util.find_spec("tensorboard") else None

    def finished(self) -> bool:
        """Saved by an earlier (resumed) run, with no training left to continue."""
        return self.weights.is_file() and not self.checkpoint.is_file()

    def previous_history(self) -> list[dict[str, Any]]:
        """history.csv rows of this model from the earlier run."""
        return [r for r in read_history(self.folder / "history.csv") if r.get("model") == self.role]


@dataclass
class TeacherResult:
    """The trained (or loaded) teacher and its training history (history.csv rows)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Nothing for metrics.json: the teacher's record is history.csv; its numbers come from evaluate."""
        return {}


@dataclass
class CacheResult:
    """The teacher's soft labels of the student's training set, and whether a saved file served them."""

    cache: SoftLabelCache
    hit: bool

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass
class StudentsResult:
    """The distilled student, the label-only baseline (``None`` when off), their history rows.

    ``init`` says how the students' token embeddings were started from the teacher's
    (``student.init: teacher_embeddings``; :func:`~distilens.models.text_init.init_embeddings_from_teacher`).
    """

    student: nn.Module
    baseline: nn.Module | None
    history: list[dict[str, Any]] = field(default_factory=list)
    init: dict[str, Any] | None = None

    def models(self) -> dict[str, nn.Module]:
        """Role → model, the baseline where it was trained."""
        return {"student": self.student, **({"baseline": self.baseline} if self.baseline is not None else {})}

    def to_json(self) -> dict[str, Any]:
        """``student_init`` where the students' embeddings started from the teacher's."""
        return {"student_init": self.init} if self.init is not None else {}


def teacher_stage(ctx: RunContext, data: DataResult, plan: ModelPlan) -> TeacherResult:
    """A loaded teacher is saved as it is; otherwise it trains on its own view of the data."""
    cfg, files, teacher = ctx.config, ModelFiles("teacher", ctx.staging), plan.teacher
    if cfg.teacher.weights:
        if ctx.world.main:
            _save_loaded_teacher(teacher, ctx.staging, plan.teacher_arch, data.bundle.for_teacher().spec)
        return TeacherResult(teacher.to(ctx.device))
    if files.finished():
        return TeacherResult(load_model(files.weights)[0].to(ctx.device), files.previous_history())
    return TeacherResult(teacher, train_teacher(ctx, data, files, teacher, cfg.seed))


def train_teacher(ctx: RunContext, data: DataResult, files: ModelFiles, teacher: nn.Module, seed: int) -> list[dict[str, Any]]:
    """Train ``teacher`` as ``teacher.train`` says from ``seed`` and save it under ``files``; its history rows.

    The teacher reads its own token ids; a frozen-encoder teacher (minilm) fits its head on
    features computed once. The second teacher of ``explain.references`` trains here too.
    """
    cfg, tc = ctx.config, ctx.config.teacher.train
    result = fit_teacher(
        teacher, data.bundle.for_teacher(), epochs=tc.epochs, batch_size=tc.batch_size, lr=tc.lr,
        weight_decay=tc.weight_decay, warmup_epochs=tc.warmup_epochs, seed=seed,
        on_epoch=ctx.on_epoch(files.role, tc.epochs), checkpoint_path=files.checkpoint, resume=True,
        tensorboard_dir=files.tensorboard, device=ctx.device, precision=cfg.runtime.precision,
    )
    if ctx.world.main:
        save_model(teacher, files.weights, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=data.bundle.for_teacher().spec)
    return [{"model": files.role, **row} for row in result.history]


def cache_stage(ctx: RunContext, data: DataResult, teacher: nn.Module, objectives: list[Objective]) -> CacheResult:
    """The teacher's soft labels: rank 0 reads or builds them and saves the file; the others read it."""
    cfg, train = ctx.config, data.transfer.for_teacher().train
    cache_dir = [Path(cfg.distill.cache_dir)] if cfg.distill.cache_dir else []

    def build() -> tuple[SoftLabelCache, bool]:
        cache, hit = SoftLabelCache.load_or_build(
            teacher, train, directories=[ctx.staging / "cache", ctx.folder.final / "cache", *cache_dir],
            save_to=ctx.staging / "cache", dtype=cfg.distill.cache.dtype, top_k=cfg.distill.cache.top_k,
            **teacher_cache_options(objectives),
        )
        for folder in cache_dir:
            cache.save(folder)
        return cache, hit

    made = distributed.on_main(build)
    key, hit = distributed.broadcast_object((made[0].key, made[1]) if made is not None else None)  # type: ignore[misc]
    if made is not None:
        ctx.console.print(f"soft labels: {'read from cache' if hit else 'computed'} ({key[:12]})")
        return CacheResult(*made)
    path = ctx.staging / "cache" / SoftLabelCache.filename(key)
    return CacheResult(SoftLabelCache.load(path, key=key, num_samples=len(train)), hit)


def students_stage(
    ctx: RunContext, data: DataResult, plan: ModelPlan, teacher: nn.Module, cache: SoftLabelCache
) -> StudentsResult:
    """The student distilled on the transfer set; the same student trained on labels alone (the baseline).

    Both start from the same weights: with ``student.init: teacher_embeddings`` their token
    embeddings start from the trained teacher's, so the comparison isolates distillation.
    """
    history: list[dict[str, Any]] = []
    with ctx.timings.timed("distill"):
        init = initialise(ctx, data, plan.student, teacher)
        train_student(ctx, ModelFiles("student", ctx.staging), plan.student, data.transfer, plan.objectives, cache, history)
    baseline = None
    if ctx.config.distill.baseline:
        with ctx.timings.timed("baseline"):
            baseline = build_student(ctx.config, data)
            initialise(ctx, data, baseline, teacher)
            train_student(ctx, ModelFiles("baseline", ctx.staging), baseline, data.bundle, None, None, history)
    return StudentsResult(plan.student, baseline, history, init)


def initialise(ctx: RunContext, data: DataResult, student: nn.Module, teacher: nn.Module) -> dict[str, Any] | None:
    """``student.init``: the student's token embeddings from the teacher's (in place), or as built."""
    if ctx.config.student.init != "teacher_embeddings":
        return None
    return init_embeddings_from_teacher(student, teacher, data.bundle.tokenizer, data.bundle.for_teacher().tokenizer)


def train_student(
    ctx: RunContext, files: ModelFiles, model: nn.Module, bundle: DataBundle, objectives: list[Objective] | None,
    cache: SoftLabelCache | None, history: list[dict[str, Any]],
) -> None:
    """Train ``model`` with ``objectives`` (``None``: labels alone) and save it; a finished one is read back."""
    if files.finished():
        model.load_state_dict(load_model(files.weights)[0].state_dict())
        model.to(ctx.device).eval()
        history.extend(files.previous_history())
        return
    d, opt = ctx.config.distill, ctx.config.distill.optimizer
    result = fit(
        model, bundle, objectives=objectives, teacher_cache=cache, epochs=d.epochs, batch_size=d.batch_size,
        optimizer=opt.name, lr=opt.lr, weight_decay=opt.weight_decay, momentum=opt.momentum,
        warmup_epochs=opt.warmup_epochs, seed=ctx.config.seed + 1, on_epoch=ctx.on_epoch(files.role, d.epochs),
        early_stopping=d.early_stopping, monitor=d.monitor, checkpoint_path=files.checkpoint, resume=True,
        tensorboard_dir=files.tensorboard, device=ctx.device, precision=ctx.config.runtime.precision,
    )
    history.extend({"model": files.role, **row} for row in result.history)
    if ctx.world.main:
        save_model(model, files.weights, arch=ctx.config.student.arch, args=ctx.config.student.args, spec=bundle.spec)


def _save_loaded_teacher(teacher: nn.Module, folder: Path, arch: Arch, spec: InputSpec) -> None:
    """teacher.safetensors + teacher.json; a TorchScript teacher also keeps its archive."""
    if isinstance(teacher, torch.jit.ScriptModule):
        atomic_write(folder / "teacher.torchscript", lambda tmp: torch.jit.save(teacher, tmp))
        arch = Arch("torchscript")
    elif isinstance(teacher, HFTextClassifier):  # rebuilt from its config.json: the run needs no hf:PATH
        arch = Arch("hf", teacher.arch_args)
    save_model(teacher, folder / "teacher.safetensors", arch=arch.arch, args=arch.args, spec=spec)
