"""Loss objectives: thin modules over the pure loss functions, and the LOSSES registry.

``base`` holds what every objective shares (:class:`Objective`, :class:`StepTensors`,
:data:`NEEDS`, :data:`LOSSES`, :func:`build_objectives`, :func:`weighted_sum`); the concrete
objectives live beside it by what they read — ``logits`` (CE, KD, DKD), ``features`` (Hint,
AttentionTransfer, GradCAMAlign, InputGradientAlign), ``text`` (AttentionKD), ``tree``
(LeafKD) — and register themselves on import. ``distilens.losses`` is this package.

Example:
    >>> import distilens as dl
    >>> objectives = [dl.losses.KD(temperature=4.0), dl.losses.CE(weight=0.1)]
"""

from .base import (
    LOSSES,
    NEEDS,
    Objective,
    StepTensors,
    build_objectives,
    requirements,
    teacher_cache_options,
    weighted_sum,
)
from .features import AttentionTransfer, GradCAMAlign, Hint, InputGradientAlign
from .logits import CE, DKD, KD
from .text import AttentionKD, check_text_objectives
from .tree import LeafKD

__all__ = [
    "Objective",
    "StepTensors",
    "NEEDS",
    "LOSSES",
    "build_objectives",
    "weighted_sum",
    "requirements",
    "teacher_cache_options",
    "CE",
    "KD",
    "DKD",
    "Hint",
    "AttentionTransfer",
    "GradCAMAlign",
    "InputGradientAlign",
    "AttentionKD",
    "LeafKD",
    "check_text_objectives",
]
