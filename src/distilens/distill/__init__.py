"""Distillation: loss functions, objectives, the soft-label cache and the trainer.

Layout: ``functional`` / ``feature_losses`` / ``text_losses`` hold the maths (pure functions
of tensors); ``objectives/`` the loss modules and the LOSSES registry; ``teacher_cache`` the
soft-label cache; ``step_plan`` what each objective sees at a step; ``state`` the training
state whose ``state_dict()`` is the checkpoint (``checkpoint`` writes and reads the files);
``trainer`` the loop; ``teacher_fit`` teacher training with a frozen encoder.
"""

from . import feature_losses, functional
from .feature_losses import (
    attention_transfer_loss,
    explanation_alignment_loss,
    hint_loss,
    input_gradient_alignment_loss,
)
from .functional import ce_loss, dkd_loss, dkd_parts, kd_loss, kl_divergence, leaf_kd_loss
from .objectives import (
    CE,
    DKD,
    KD,
    LOSSES,
    NEEDS,
    AttentionKD,
    AttentionTransfer,
    GradCAMAlign,
    Hint,
    InputGradientAlign,
    LeafKD,
    Objective,
    StepTensors,
    build_objectives,
    check_text_objectives,
    requirements,
    teacher_cache_options,
    weighted_sum,
)
from .state import FitResult, TrainState
from .teacher_cache import SoftLabelCache
from .teacher_fit import fit_teacher, teacher_bundle
from .text_losses import attention_kd_loss
from .trainer import TrainingDiverged, evaluate_split, fit

__all__ = [
    "functional",
    "kd_loss",
    "ce_loss",
    "kl_divergence",
    "dkd_loss",
    "dkd_parts",
    "leaf_kd_loss",
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
    "check_text_objectives",
    "fit_teacher",
    "teacher_bundle",
    "GradCAMAlign",
    "InputGradientAlign",
    "LeafKD",
    "requirements",
    "teacher_cache_options",
    "LOSSES",
    "NEEDS",
    "StepTensors",
    "build_objectives",
    "weighted_sum",
    "SoftLabelCache",
    "fit",
    "FitResult",
    "TrainState",
    "TrainingDiverged",
    "evaluate_split",
]
