"""Before any file is written: the teacher (loaded or built), the student, the losses and the explainers.

Everything the user could get wrong about them is checked here, so that a bad config fails
with one line and leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .. import controls
from ..config import RunConfig
from ..distill import Objective, build_objectives, check_text_objectives
from ..distill.objectives import requirements
from ..errors import ConfigError
from ..explain import ExplainInputs, choose_methods
from ..models import build_for_data, load_teacher
from ..models.layer_init import check_layer_init
from ..models.text_init import check_teacher_init
from ..runtime import seed_everything
from .data import DataResult

__all__ = ["Arch", "ModelPlan", "plan_models", "build_student", "build_teacher", "teacher_arch", "explicit_methods"]


@dataclass(frozen=True)
class Arch:
    """A model's architecture as saved in its ``.json``: a zoo name (or import path) and its arguments."""

    arch: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelPlan:
    """The models and losses of a run, checked against the data before training.

    Attributes:
        teacher: The loaded teacher (``teacher.weights``) or an untrained one.
        teacher_arch: What teacher.json records for it.
        student: The untrained student (seeded with ``seed + 1``).
        objectives: The distillation losses, built from ``distill.losses``.
        explain_inputs: The test split as both models read it, and how their maps meet.
        methods: Explainers to run after training.
        skipped: Explainers of the default list that do not apply here, with the reason.
    """

    teacher: nn.Module
    teacher_arch: Arch
    student: nn.Module
    objectives: list[Objective]
    explain_inputs: ExplainInputs
    methods: list[str]
    skipped: dict[str, str]


def build_student(cfg: RunConfig, data: DataResult) -> nn.Module:
    """A fresh student: the distilled one and the label-only baseline start from the same weights."""
    return _build(cfg.student.arch, cfg.student.args, data, cfg.seed + 1, "student")


def build_teacher(cfg: RunConfig, data: DataResult, seed: int) -> nn.Module:
    """An untrained teacher of the config's architecture, its weights a function of ``seed``."""
    return _build(cfg.teacher.arch, cfg.teacher.args, data, seed, "teacher")


def plan_models(cfg: RunConfig, data: DataResult) -> ModelPlan:
    """Build the losses, the student and the teacher, and choose the explainers.

    Raises:
        DistilensError: a loss, model or explainer that does not fit the config or the data.
    """
    objectives = build_objectives([  # an unset weight is the loss's own default (gradcam_align: 0.1)
        {"name": l.name, **({"weight": l.weight} if l.weight is not None else {}), **l.options()} for l in cfg.distill.losses
    ])
    check_text_objectives(objectives, data.bundle)
    _check_augmented_objectives(cfg, objectives)
    controls.check_references(cfg)  # evidence (issue 15): a second teacher that cannot be made fails here
    student = build_student(cfg, data)
    if cfg.teacher.weights:  # checked against the data here, before any training
        teacher = load_teacher(
            cfg.teacher.weights, arch=cfg.teacher.arch, args=cfg.teacher.args, spec=data.bundle.spec,
            trust_torchscript=cfg.teacher.trust_torchscript,
        )
    else:
        teacher = build_teacher(cfg, data, cfg.seed)
    inputs = data.modality.explain_inputs(data.bundle)
    methods, skipped = choose_methods(cfg.explain.methods, teacher, student, inputs, explicit=explicit_methods(cfg))
    if cfg.student.init == "teacher_embeddings":
        check_teacher_init(student, teacher)  # both read token ids: the student's table can start from the teacher's
    if cfg.student.init == "teacher_layers":
        check_layer_init(student, teacher)  # the teacher's architecture with fewer layers, found before training
    return ModelPlan(teacher, teacher_arch(cfg), student, objectives, inputs, methods, skipped)


def _check_augmented_objectives(cfg: RunConfig, objectives: list[Objective]) -> None:
    """With ``data.augment`` the teacher's logits of each view are known, not its features or maps."""
    if not cfg.data.augment:
        return
    names = [o.name for o in objectives if requirements(o) & {"teacher_features", "teacher_maps"}]
    if names:
        raise ConfigError(f"distill.losses: {', '.join(names)} needs the teacher's features or maps, "
                          "which are not stored for augmented views; with data.augment use logit losses (kd, dkd, ce, "
                          "leaf_kd), or remove data.augment")


def explicit_methods(cfg: RunConfig) -> bool:
    """Whether the user named ``explain.methods`` (each must then apply) or left the default list."""
    return "methods" in cfg.explain.model_fields_set


def teacher_arch(cfg: RunConfig) -> Arch:
    """The teacher's architecture: the config's, or that of a distilens .json beside its weights."""
    if cfg.teacher.weights:
        meta_path = Path(cfg.teacher.weights).with_suffix(".json")
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if isinstance(meta, dict) and meta.get("format") == "distilens-model/1":
                return Arch(meta["arch"], meta.get("args", {}))
    return Arch(cfg.teacher.arch, cfg.teacher.args)


def _build(arch: str, args: dict[str, Any], data: DataResult, seed: int, role: str) -> nn.Module:
    seed_everything(seed)  # weights are a function of the seed alone
    # Args that cannot build or allocate, and an image_size too small for the model, fail here (one forward on zeros).
    return build_for_data(arch, data.bundle.spec, args, role)
