"""Distillation: loss functions, objectives, the soft-label cache and the trainer."""

from . import functional
from .functional import ce_loss, kd_loss, kl_divergence
from .objectives import CE, KD, LOSSES, Objective, StepTensors, build_objectives, weighted_sum
from .teacher_cache import SoftLabelCache
from .trainer import FitResult, evaluate_split, fit

__all__ = [
    "functional",
    "kd_loss",
    "ce_loss",
    "kl_divergence",
    "Objective",
    "KD",
    "CE",
    "LOSSES",
    "StepTensors",
    "build_objectives",
    "weighted_sum",
    "SoftLabelCache",
    "fit",
    "FitResult",
    "evaluate_split",
]
