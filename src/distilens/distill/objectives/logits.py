"""Objectives on the logits: cross-entropy on the labels, Hinton's KD, decoupled KD.

Example:
    >>> objectives = [KD(temperature=4.0), CE(weight=0.1)]
"""

from __future__ import annotations

from torch import Tensor

from .. import functional as F
from .base import LOSSES, Objective, StepTensors

__all__ = ["CE", "KD", "DKD"]


@LOSSES.register("ce")
class CE(Objective):
    """Cross-entropy on the labels.

    Args:
        weight: Weight in the sum of objectives.
        label_smoothing: ε of label smoothing.
    """

    name = "ce"

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, step: StepTensors) -> Tensor:
        return F.ce_loss(step.student_logits, step.targets, self.label_smoothing)


@LOSSES.register("kd")
class KD(Objective):
    """Hinton et al. 2015 knowledge distillation: T² · KL(p_T ‖ p_S) at temperature T.

    Args:
        weight: Weight in the sum of objectives.
        temperature: Softening temperature T > 0.
    """

    name = "kd"
    needs_teacher = True

    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, step: StepTensors) -> Tensor:
        teacher = step.require("teacher_logits", self.name)
        return F.kd_loss(step.student_logits, teacher, self.temperature)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"


@LOSSES.register("dkd")
class DKD(Objective):
    """Decoupled KD (Zhao et al. 2022, CVPR): T²·(α·TCKD + β·NCKD), weight warmed up linearly.

    As in the reference code (mdistiller ``DKD``), the term is multiplied by
    ``min(epoch / warmup_epochs, 1)`` (epochs counted from 1), read from ``step.epoch``;
    outside a training loop (``epoch is None``) the factor is 1. Pair it with ``ce`` (the
    paper trains with CE weight 1).

    Args:
        weight: Weight in the sum of objectives.
        alpha: Weight of the target-class term (paper: 1).
        beta: Weight of the non-target-class term (paper: 8 on CIFAR-100).
        temperature: Softening temperature (paper: 4).
        warmup_epochs: Epochs of linear warm-up of the term (reference code: 20; 0 = none).

    Example:
        >>> fit(student, bundle, objectives=[DKD(warmup_epochs=5), CE()], teacher_cache=cache)
    """

    name = "dkd"
    needs_teacher = True

    def __init__(
        self, weight: float = 1.0, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
        warmup_epochs: int = 20,
    ) -> None:
        super().__init__(weight)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be ≥ 0, got alpha={alpha}, beta={beta}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be ≥ 0, got {warmup_epochs}")
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.warmup_epochs = int(warmup_epochs)

    def warmup_factor(self, epoch: int | None) -> float:
        """min(epoch / warmup_epochs, 1); 1 without warm-up or outside training."""
        if epoch is None or self.warmup_epochs == 0:
            return 1.0
        return min(epoch / self.warmup_epochs, 1.0)

    def forward(self, step: StepTensors) -> Tensor:
        teacher = step.require("teacher_logits", self.name)
        loss = F.dkd_loss(step.student_logits, teacher, step.targets, self.alpha, self.beta, self.temperature)
        return self.warmup_factor(step.epoch) * loss

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}, "
                f"warmup_epochs={self.warmup_epochs}")
