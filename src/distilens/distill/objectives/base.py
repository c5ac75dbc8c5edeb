"""What every objective shares: the Objective base class, StepTensors, NEEDS and the LOSSES registry.

The concrete objectives (:mod:`.logits`, :mod:`.features`, :mod:`.text`, :mod:`.tree`) import
this module and register themselves into :data:`LOSSES`; nothing here imports them.

A training step hands every objective a :class:`StepTensors`; each objective takes the
tensors it needs and calls its pure function. The total is the weighted sum.

An objective declares what it needs (``needs``: teacher logits, feature maps of a named
layer, the inputs with gradients, explanation maps of the teacher ...) and the trainer
computes only what some objective needs. Tensors reach the objective already resolved:
``step.student_features`` *is* the output of that objective's ``student_layer``, never a
dict addressed by module paths. No objective receives the student module: what it would
run the student again for (attention maps, a tree's path probabilities) is recorded from
the training forward and handed over as tensors.

Example:
    >>> objectives = [KD(temperature=4.0), CE(weight=0.1)]
    >>> total, terms = weighted_sum(objectives, StepTensors(s_logits, targets, t_logits))
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError, DistilensError
from ...registry import Registry

__all__ = [
    "Objective",
    "LOSSES",
    "NEEDS",
    "StepTensors",
    "build_objectives",
    "weighted_sum",
    "requirements",
    "teacher_cache_options",
]

#: What an objective may ask the trainer for (``Objective.needs``).
NEEDS = frozenset(
    {
        "teacher_logits",  # cached teacher logits
        "teacher_target",  # the teacher's top class per sample
        "teacher_features",  # cached teacher output of ``teacher_layer``
        "teacher_maps",  # cached teacher explanation maps (kind: ``teacher_map``)
        "student_features",  # student output of ``student_layer``, in the graph
        "inputs",  # the batch's inputs
        "input_gradients",  # the inputs, with requires_grad set before the forward
        "token_mask",  # (B, L) True at real tokens of a token-id student
        "leaves",  # a soft-tree student's leaf path and class log-probabilities (None for others)
    }
)


@dataclass
class StepTensors:
    """What one training step offers an objective (only what some objective asked for).

    Attributes:
        student_logits: (B, C) the student's output.
        targets: (B,) int64 labels.
        teacher_logits: (B, C) the teacher's cached logits, or ``None`` for label-only training.
        teacher_target: (B,) int64 the teacher's top class (explanation losses' target).
        student_features: This objective's ``student_layer`` output, (B, C, h, w) or (B, F)
            (or (B, G, L, L) for the ``attention:G`` pseudo-layer), in the autograd graph of
            ``student_logits``.
        teacher_features: This objective's ``teacher_layer`` output from the cache.
        teacher_maps: (B, H, W) Grad-CAM or (B, *input) input gradients of the teacher, from
            the cache, for ``teacher_target``.
        inputs: (B, *input) the batch (``requires_grad`` when input gradients are needed).
        token_mask: (B, L) bool, True at the real (non-pad) tokens of a token-id student.
        leaf_log_paths: (B, leaves) log probability of reaching each leaf, from the training
            forward of a soft decision tree student (``None`` for other students).
        leaf_log_probs: (leaves, C) log class distribution of each leaf of that tree.
        epoch: 1-based epoch of the trainer, ``None`` outside a training loop.
        step: 0-based global optimisation step, ``None`` outside a training loop.
    """

    student_logits: Tensor
    targets: Tensor
    teacher_logits: Tensor | None = None
    teacher_target: Tensor | None = None
    student_features: Tensor | None = None
    teacher_features: Tensor | None = None
    teacher_maps: Tensor | None = None
    inputs: Tensor | None = None
    token_mask: Tensor | None = None
    leaf_log_paths: Tensor | None = None
    leaf_log_probs: Tensor | None = None
    epoch: int | None = None
    step: int | None = None

    def require(self, field: str, loss: str) -> Tensor:
        """The tensor ``field``, or a ValueError naming the loss that needed it."""
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"the '{loss}' loss needs {field} in its StepTensors; train it with fit(), which provides it")
        return value


class Objective(nn.Module):
    """Base class: a weighted loss term.

    Subclasses set ``name`` and ``needs`` (a subset of :data:`NEEDS`); objectives reading
    feature maps set the instance attributes ``student_layer`` / ``teacher_layer`` (a layer
    name or ``auto``), and objectives reading teacher maps set ``teacher_map``
    (``gradcam`` or ``input_gradients``). ``needs_teacher = True`` is kept as shorthand for
    ``"teacher_logits" in needs``.
    """

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset()
    teacher_map: ClassVar[str | None] = None

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be ≥ 0, got {weight}")
        self.weight = float(weight)
        self.student_layer: str | None = None
        self.teacher_layer: str | None = None

    def prepare(self, example: StepTensors) -> None:
        """Create parameters whose sizes depend on the data (e.g. an adapter).

        The trainer calls it once, on a small example step, before it builds the optimiser,
        so that the parameters it creates are optimised with the student's.
        """

    def forward(self, step: StepTensors) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def requirements(objective: Objective) -> frozenset[str]:
    """Everything ``objective`` needs from the trainer (``needs`` plus the legacy flag)."""
    needs = set(objective.needs)
    if objective.needs_teacher:
        needs.add("teacher_logits")
    unknown = needs - NEEDS
    if unknown:
        raise ValueError(f"objective '{objective.name}' needs unknown tensors {sorted(unknown)}; valid: {sorted(NEEDS)}")
    return frozenset(needs)


def teacher_cache_options(objectives: Sequence[Objective]) -> dict[str, Any]:
    """The ``SoftLabelCache.build`` / ``load_or_build`` options that ``objectives`` need.

    Example:
        >>> opts = teacher_cache_options([Hint(teacher_layer="features.4")])
        >>> opts
        {'features': ['features.4'], 'gradcam': [], 'input_gradients': False}
    """
    features: list[str] = []
    gradcam: list[str] = []
    input_grads = False
    for obj in objectives:
        needs = requirements(obj)
        if "teacher_features" in needs and obj.teacher_layer not in features:
            features.append(str(obj.teacher_layer))
        if "teacher_maps" in needs:
            if obj.teacher_map == "gradcam" and obj.teacher_layer not in gradcam:
                gradcam.append(str(obj.teacher_layer))
            elif obj.teacher_map == "input_gradients":
                input_grads = True
    return {"features": features, "gradcam": gradcam, "input_gradients": input_grads}


LOSSES: Registry[type[Objective]] = Registry("loss")


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


def weighted_sum(
    objectives: Sequence[Objective], step: StepTensors | Sequence[StepTensors]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ wᵢ·lossᵢ and the unweighted terms by name (``kd``, ``ce``; repeats get ``kd_1`` …).

    Args:
        objectives: The terms.
        step: One :class:`StepTensors` for all, or one per objective (the trainer resolves
            each objective's layers into its own view).
    """
    steps = [step] * len(objectives) if isinstance(step, StepTensors) else list(step)
    if len(steps) != len(objectives):
        raise ValueError(f"{len(objectives)} objectives but {len(steps)} StepTensors")
    terms: dict[str, Tensor] = {}
    total = torch.zeros((), device=steps[0].student_logits.device) if steps else torch.zeros(())
    for obj, view in zip(objectives, steps):
        value = obj(view)
        key = obj.name
        n = 1
        while key in terms:
            key = f"{obj.name}_{n}"
            n += 1
        terms[key] = value.detach()
        total = total + obj.weight * value
    return total, terms
