"""Start a student from some of the teacher's layers: a layer-truncated teacher (DistilBERT-style).

DistilBERT (Sanh et al. 2019) builds its student as the teacher's architecture with half
the layers and initialises it from the teacher, taking one layer out of two. Here the
student is the teacher's architecture with fewer repeated blocks (``student.arch`` equal to
``teacher.arch``, e.g. ``minilm`` with ``student.args: {layers: 3}``, or ``tiny_transformer``
with a smaller ``layers``). ``student.init: teacher_layers`` copies, before distillation:

* every parameter and buffer outside the repeated blocks (token and position embeddings,
  norms, pooler, head) from the teacher's tensor of the same name;
* block k of each ``nn.ModuleList`` the student shares with the teacher from the teacher's
  block ``k · L_t // L_s`` (6 → 3 layers: blocks 0, 2 and 4, DistilBERT's choice).

Every tensor's shape must match: the student must differ from the teacher in its number of
blocks only.

Example:
    >>> info = init_layers_from_teacher(student, teacher)
    >>> info["layers"]      # list name → the teacher's blocks the student's were copied from
    {'encoder.encoder.layer': [0, 2, 4]}
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .capabilities import unwrap

__all__ = ["kept_layers", "check_layer_init", "init_layers_from_teacher"]


def kept_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher's blocks a student of ``student_layers`` blocks starts from: ``k · L_t // L_s``.

    Example:
        >>> kept_layers(6, 3), kept_layers(6, 2), kept_layers(4, 4)
        ([0, 2, 4], [0, 3], [0, 1, 2, 3])
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ConfigError(
            f"student.init teacher_layers: the student has {student_layers} layers and the teacher {teacher_layers}; "
            "a student can keep between 1 and all of the teacher's layers"
        )
    return [k * teacher_layers // student_layers for k in range(student_layers)]


def _tensors(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer by name (frozen ones too, which a state dict may leave out)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _pairs(student: nn.Module, teacher: nn.Module) -> tuple[dict[str, list[int]], list[tuple[Tensor, Tensor]]]:
    """The blocks kept per list, and each student tensor with the teacher tensor it starts from."""
    s_model, t_model = unwrap(student), unwrap(teacher)
    t_modules = dict(t_model.named_modules())
    picks = {
        name: kept_layers(len(t_modules[name]), len(m))
        for name, m in s_model.named_modules()
        if name and isinstance(m, nn.ModuleList) and isinstance(t_modules.get(name), nn.ModuleList)
    }
    patterns = [(re.compile(rf"^{re.escape(name)}\.(\d+)\."), name, kept) for name, kept in picks.items()]
    source = _tensors(t_model)
    pairs = []
    for key, tensor in _tensors(s_model).items():
        src = key
        for pattern, name, kept in patterns:
            match = pattern.match(key)
            if match:
                src = f"{name}.{kept[int(match.group(1))]}.{key[match.end():]}"
                break
        other = source.get(src)
        if other is None or other.shape != tensor.shape:
            found = "is missing" if other is None else f"has shape {tuple(other.shape)}, not {tuple(tensor.shape)}"
            raise ConfigError(
                f"student.init teacher_layers: the teacher's '{src}' {found}; the student must be the teacher's "
                "architecture with fewer layers (same student.arch, the same widths in student.args)"
            )
        pairs.append((tensor, other))
    return picks, pairs


def check_layer_init(student: nn.Module, teacher: nn.Module) -> None:
    """Raise :class:`ConfigError` now, before training, if ``student`` cannot start from ``teacher``'s layers."""
    _pairs(student, teacher)


@torch.no_grad()
def init_layers_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, Any]:
    """Copy the teacher's weights into ``student`` (in place), block k from block ``k · L_t // L_s``.

    Args:
        student: The teacher's architecture with fewer blocks in one or more ``nn.ModuleList``.
        teacher: The trained teacher.

    Returns:
        ``source``: ``"teacher_layers"``; ``layers``: list name → the teacher's block indices
        copied; ``tensors``: how many tensors were copied.

    Raises:
        ConfigError: The student is not the teacher's architecture with fewer blocks (a
            tensor is missing from the teacher or differs in shape).
    """
    picks, pairs = _pairs(student, teacher)
    for mine, theirs in pairs:
        mine.copy_(theirs.to(mine.device, mine.dtype))
    return {"source": "teacher_layers", "layers": picks, "tensors": len(pairs)}
