"""Distillation: loss functions, objectives, the soft-label cache and the trainer."""

from . import functional
from . import feature_losses
from .feature_losses import (
    attention_transfer_loss,
    explanation_alignment_loss,
    hint_loss,
    input_gradient_alignment_loss,
)
from .functional import ce_loss, dkd_loss, dkd_parts, kd_loss, kl_divergence
from .objectives import (
    CE,
    DKD,
    KD,
    LOSSES,
    AttentionKD,
    AttentionTransfer,
    GradCAMAlign,
    Hint,
    InputGradientAlign,
    Objective,
    StepTensors,
    build_objectives,
    requirements,
    teacher_cache_options,
    weighted_sum,
)
from .teacher_cache import SoftLabelCache
from .text_losses import attention_kd_loss
from .tree_objectives import LeafKD
from .trainer import FitResult, evaluate_split, fit
from .teacher_fit import fit_teacher

__all__ = [
    "functional",
    "kd_loss",
    "ce_loss",
    "kl_divergence",
    "dkd_loss",
    "dkd_parts",
    "feature_losses",
    "hint_loss",
    "attention_transfer_loss",
    "explanation_alignment_loss",
    "input_gradient_alignment_loss",
    "Objective",
    "KD",
    "CE",
    "DKD",
    "Hint",
    "AttentionTransfer",
    "AttentionKD",
    "attention_kd_loss",
    "fit_teacher",
    "GradCAMAlign",
    "InputGradientAlign",
    "LeafKD",
    "requirements",
    "teacher_cache_options",
    "LOSSES",
    "StepTensors",
    "build_objectives",
    "weighted_sum",
    "SoftLabelCache",
    "fit",
    "FitResult",
    "evaluate_split",
]
