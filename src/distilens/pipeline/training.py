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
from ..config import RunConfig
from ..data import DataBundle, InputSpec
from ..data.augment import Augment, parse_augment
from ..distill import CE, Objective, SoftLabelCache, fit, fit_teacher, teacher_cache_options
from ..io import atomic_write
from ..models import HFTextClassifier, load_model, save_model
from ..models.layer_init import init_layers_from_teacher
from ..models.text_init import init_embeddings_from_teacher
from ..report.inputs import read_history
from .context import RunContext
from .data import DataResult
from .models import Arch, ModelPlan, build_student

__all__ = [
    "ModelFiles", "TeacherResult", "CacheResult", "StudentsResult", "teacher_stage", "cache_stage", "students_stage",
    "train_teacher", "train_student", "initialise", "run_augment", "augmentation_record",
]


def run_augment(cfg: RunConfig) -> Augment | None:
    """``data.augment`` parsed (the ops every model training on the training split sees), or ``None``."""
    augment = parse_augment(cfg.data.augment)
    return augment if augment.ops else None


def augmentation_record(cfg: RunConfig) -> dict[str, Any] | None:
    """metrics.json's ``augmentation``: the ops and where the student's soft labels came from (``None``: none)."""
    augment = run_augment(cfg)
    if augment is None:
        return None
    k = cfg.distill.stored_views(True)
    return {"ops": augment.to_config(), "teacher_views": "online" if k is None else {"stored": k}}


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
    """The trained (or loaded) teacher, its training history (history.csv rows) and, for a
    frozen-encoder teacher, how its linear head was fitted (``FitResult.head_fit``)."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    head_fit: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """``teacher_head_fit`` where the head was fitted to convergence; the teacher's other
        numbers come from evaluate, its record is history.csv."""
        return {"teacher_head_fit": self.head_fit} if self.head_fit is not None else {}


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
    augmentation: dict[str, Any] | None = None

    def models(self) -> dict[str, nn.Module]:
        """Role → model, the baseline where it was trained."""
        return {"student": self.student, **({"baseline": self.baseline} if self.baseline is not None else {})}

    def to_json(self) -> dict[str, Any]:
        """``student_init`` where the students' embeddings started from the teacher's; ``augmentation`` where augmented."""
        out: dict[str, Any] = {"student_init": self.init} if self.init is not None else {}
        if self.augmentation is not None:
            out["augmentation"] = self.augmentation
        return out


def teacher_stage(ctx: RunContext, data: DataResult, plan: ModelPlan) -> TeacherResult:
    """A loaded teacher is saved as it is; otherwise it trains on its own view of the data."""
    cfg, files, teacher = ctx.config, ModelFiles("teacher", ctx.staging), plan.teacher
    if cfg.teacher.weights:
        if ctx.world.main:
            _save_loaded_teacher(teacher, ctx.staging, plan.teacher_arch, data.bundle.for_teacher().spec)
        return TeacherResult(teacher.to(ctx.device))
    if files.finished():
        return TeacherResult(load_model(files.weights)[0].to(ctx.device), files.previous_history())
    history, head_fit = train_teacher(ctx, data, files, teacher, cfg.seed)
    return TeacherResult(teacher, history, head_fit)


def train_teacher(
    ctx: RunContext, data: DataResult, files: ModelFiles, teacher: nn.Module, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Train ``teacher`` as ``teacher.train`` says from ``seed`` and save it under ``files``: its history rows and head fit.

    The teacher reads its own token ids; a frozen-encoder teacher (minilm) fits its head on
    features computed once. The second teacher of ``explain.references`` trains here too.
    """
    cfg, tc = ctx.config, ctx.config.teacher.train
    result = fit_teacher(
        teacher, data.bundle.for_teacher(), epochs=tc.epochs, batch_size=tc.batch_size, optimizer=tc.optimizer, lr=tc.lr,
        weight_decay=tc.weight_decay, momentum=tc.momentum, warmup_epochs=tc.warmup_epochs, seed=seed,
        schedule=tc.schedule, milestones=tc.milestones, gamma=tc.gamma, augment=run_augment(cfg),
        objectives=[CE(label_smoothing=tc.label_smoothing)] if tc.label_smoothing else None,
        on_epoch=(bar := ctx.on_epoch(files.role, tc.epochs)), progress=bar.step, checkpoint_path=files.checkpoint,
        resume=True,
        tensorboard_dir=files.tensorboard, device=ctx.device, precision=cfg.runtime.precision,
    )
    if ctx.world.main:
        save_model(teacher, files.weights, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=data.bundle.for_teacher().spec)
        _warn_head_fit(ctx, result.head_fit)
    return [{"model": files.role, **row} for row in result.history], result.head_fit


def _warn_head_fit(ctx: RunContext, head_fit: dict[str, Any] | None) -> None:
    """Say when the frozen-encoder teacher's head fit stopped short or chose a decay at the grid's edge."""
    if head_fit is None:
        return
    decays = [row["weight_decay"] for row in head_fit["path"]]
    if not head_fit["converged"]:
        ctx.console.print(f"[yellow]warning:[/] the teacher's linear head stopped before converging (largest gradient "
                          f"entry {head_fit['grad_norm']:.1e}); its accuracy may be below what its features allow")
    if head_fit["at_grid_edge"]:
        ctx.console.print(f"[yellow]warning:[/] the teacher's head chose weight decay {head_fit['weight_decay']:g}, at the "
                          f"edge of the grid {min(decays):g}–{max(decays):g}: a wider grid might validate better")


def cache_stage(ctx: RunContext, data: DataResult, teacher: nn.Module, objectives: list[Objective]) -> CacheResult:
    """The teacher's soft labels: rank 0 reads or builds them and saves the file; the others read it.

    With ``data.augment`` and stored views (``distill.teacher_views: {stored: K}``, the
    default) the cache holds K augmented views of every training image and their soft
    labels; with ``online`` it holds the plain images' (for the report) and the teacher labels
    each augmented batch during distillation.
    """
    cfg, train = ctx.config, data.transfer.for_teacher().train
    read, (here, *shared) = ctx.cache_folders()
    augment = run_augment(cfg)
    k = cfg.distill.stored_views(augment is not None)
    views = {"augment": augment, "views": k, "view_seed": cfg.seed} if k is not None else {}

    def build() -> tuple[SoftLabelCache, bool]:
        cache, hit = SoftLabelCache.load_or_build(
            teacher, train, directories=read, save_to=here, dtype=cfg.distill.cache.dtype, top_k=cfg.distill.cache.top_k,
            **teacher_cache_options(objectives), **views,
        )
        for folder in shared:
            cache.save(folder)
        return cache, hit

    done = ctx.waiting("soft labels")  # the teacher's pass over the training set: a row on the bars meanwhile
    made = distributed.on_main(build)
    done("read from cache" if made is not None and made[1] else "computed")
    key, hit = distributed.broadcast_object((made[0].key, made[1]) if made is not None else None)  # type: ignore[misc]
    if made is not None:
        what = f", {k} stored augmented views of every training image" if k is not None else ""
        ctx.console.print(f"soft labels: {'read from cache' if hit else 'computed'} ({key[:12]}{what})")
        return CacheResult(*made)
    path = ctx.staging / "cache" / SoftLabelCache.filename(key)
    return CacheResult(SoftLabelCache.load(path, key=key, num_samples=len(train)), hit)


def students_stage(
    ctx: RunContext, data: DataResult, plan: ModelPlan, teacher: nn.Module, cache: SoftLabelCache
) -> StudentsResult:
    """The student distilled on the transfer set; the same student trained on labels alone (the baseline).

    Both start from the same weights: with ``student.init: teacher_embeddings`` their token
    embeddings start from the trained teacher's, so the comparison isolates distillation.
    With transfer copies the baseline, which trains on the training texts alone, gets as many
    steps as the student (:func:`baseline_epochs`): the control is not short of training.
    """
    history: list[dict[str, Any]] = []
    with ctx.timings.timed("distill"):
        init = initialise(ctx, data, plan.student, teacher)
        online = teacher if ctx.config.distill.teacher_views == "online" and run_augment(ctx.config) is not None else None
        train_student(ctx, ModelFiles("student", ctx.staging), plan.student, data.transfer, plan.objectives,
                      None if online is not None else cache, history, online)
    baseline = None
    if ctx.config.distill.baseline:
        with ctx.timings.timed("baseline"):
            baseline = build_student(ctx.config, data)
            initialise(ctx, data, baseline, teacher)
            train_student(ctx, ModelFiles("baseline", ctx.staging), baseline, data.bundle, None, None, history,
                          epochs=baseline_epochs(ctx.config.distill.epochs, len(data.transfer.train), len(data.bundle.train)))
    return StudentsResult(plan.student, baseline, history, init, augmentation_record(ctx.config))


def baseline_epochs(epochs: int, n_transfer: int, n_train: int) -> int:
    """Epochs of the label-only baseline on ``n_train`` samples: the student's steps over its ``n_transfer``.

    Example:
        >>> baseline_epochs(3, 8925 * 21, 8925)   # 20 copies per text: 3 epochs of the student are 63 of the baseline
        63
    """
    return max(epochs, round(epochs * n_transfer / max(n_train, 1)))


def initialise(ctx: RunContext, data: DataResult, student: nn.Module, teacher: nn.Module) -> dict[str, Any] | None:
    """``student.init``: the student's token embeddings or its layers from the teacher's (in place), or as built."""
    init = ctx.config.student.init
    if init == "teacher_layers":
        return init_layers_from_teacher(student, teacher)
    if init == "teacher_embeddings":
        return init_embeddings_from_teacher(student, teacher, data.bundle.tokenizer, data.bundle.for_teacher().tokenizer)
    return None


def train_student(
    ctx: RunContext, files: ModelFiles, model: nn.Module, bundle: DataBundle, objectives: list[Objective] | None,
    cache: SoftLabelCache | None, history: list[dict[str, Any]], online_teacher: nn.Module | None = None,
    *, epochs: int | None = None,
) -> None:
    """Train ``model`` with ``objectives`` (``None``: labels alone) and save it; a finished one is read back.

    With ``data.augment`` it trains on augmented views: the stored views of ``cache``, or
    fresh ones every epoch labelled by ``online_teacher`` (or by nobody: labels alone).
    ``epochs`` overrides ``distill.epochs`` (the baseline's, with transfer copies).
    """
    if files.finished():
        model.load_state_dict(load_model(files.weights)[0].state_dict())
        model.to(ctx.device).eval()
        history.extend(files.previous_history())
        return
    d, opt = ctx.config.distill, ctx.config.distill.optimizer
    epochs = d.epochs if epochs is None else epochs
    result = fit(
        model, bundle, objectives=objectives, teacher_cache=cache, epochs=epochs, batch_size=d.batch_size,
        optimizer=opt.name, lr=opt.lr, weight_decay=opt.weight_decay, momentum=opt.momentum,
        warmup_epochs=opt.warmup_epochs, schedule=opt.schedule, milestones=opt.milestones, gamma=opt.gamma,
        augment=run_augment(ctx.config), online_teacher=online_teacher,
        seed=ctx.config.seed + 1, on_epoch=(bar := ctx.on_epoch(files.role, epochs)), progress=bar.step,
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
