"""Loss modules (thin wrappers over :mod:`distill.functional`) and the LOSSES registry.

A training step hands every objective the same :class:`StepTensors`; each objective takes
the tensors it needs and calls its pure function. The total is the weighted sum.

Example:
    >>> objectives = [KD(temperature=4.0), CE(weight=0.1)]
    >>> total, terms = weighted_sum(objectives, StepTensors(s_logits, targets, t_logits))
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DistilensError
from ..registry import Registry
from . import functional as F

__all__ = ["Objective", "KD", "CE", "LOSSES", "StepTensors", "build_objectives", "weighted_sum"]


@dataclass
class StepTensors:
    """What one training step offers the objectives.

    Attributes:
        student_logits: (B, C) the student's output.
        targets: (B,) int64 labels.
        teacher_logits: (B, C) the teacher's cached logits, or ``None`` for label-only training.
    """

    student_logits: Tensor
    targets: Tensor
    teacher_logits: Tensor | None = None


class Objective(nn.Module):
    """Base class: a weighted loss term. Subclasses set ``name`` and ``needs_teacher``."""

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be ≥ 0, got {weight}")
        self.weight = float(weight)

    def forward(self, step: StepTensors) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


LOSSES: Registry[type[Objective]] = Registry("loss")


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
        if step.teacher_logits is None:
            raise ValueError("the 'kd' loss needs teacher logits (a SoftLabelCache)")
        return F.kd_loss(step.student_logits, step.teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"


def build_objectives(specs: list[dict[str, Any]]) -> list[Objective]:
    """Build objectives from ``[{name, weight, **options}, ...]`` (the config's distill.losses).

    Raises:
        ConfigError: unknown loss, unknown option, or a value out of range; the message
            names the entry, e.g. ``distill.losses[0]``.
    """
    objectives: list[Objective] = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        where = f"distill.losses[{i}]"
        name = spec.pop("name", None)
        if name is None:
            raise ConfigError(f"{where}: missing 'name'; e.g. {{name: kd, weight: 1.0}}")
        try:
            cls = LOSSES.get(str(name))
        except DistilensError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = [k for k in spec if k not in accepted]
        if unknown:
            raise ConfigError(
                f"{where}: loss '{name}' has no option '{unknown[0]}'; its options are: {', '.join(accepted)}"
            )
        try:
            objectives.append(cls(**spec))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if objectives and sum(o.weight for o in objectives) <= 0:
        raise ConfigError("distill.losses: the weights sum to 0; give at least one loss a positive weight")
    return objectives


def weighted_sum(objectives: list[Objective], step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ wᵢ·lossᵢ and the unweighted terms by name (``kd``, ``ce``; repeats get ``kd_1`` …)."""
    terms: dict[str, Tensor] = {}
    total = torch.zeros((), device=step.student_logits.device)
    for obj in objectives:
        value = obj(step)
        key = obj.name
        n = 1
        while key in terms:
            key = f"{obj.name}_{n}"
            n += 1
        terms[key] = value.detach()
        total = total + obj.weight * value
    return total, terms
