"""Objectives for transformer text students: self-attention transfer (``attention_kd``).

The FitNets ``hint`` of :mod:`.features` serves text models unchanged: for a text model its
``auto`` layer is the ``pooled`` pseudo-layer (``forward_features``, (B, D)), and the
adapter is a ``Linear(D_s, D_t)``.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ...data.bundle import DataBundle
from ...errors import ConfigError
from ...models.tap import ATTENTION_PREFIX
from ..text_losses import attention_kd_loss
from .base import LOSSES, Objective, StepTensors

__all__ = ["AttentionKD", "check_text_objectives"]


def check_text_objectives(objectives: Sequence[Objective], bundle: DataBundle) -> None:
    """Fail before training when ``attention_kd`` cannot apply to ``bundle``.

    Raises:
        ConfigError: the data is not text, or the teacher reads other token ids than the
            student (its own tokenizer), so their attention maps do not align.
    """
    for i, obj in enumerate(objectives):
        if not isinstance(obj, AttentionKD):
            continue
        where = f"distill.losses[{i}] (attention_kd)"
        if bundle.spec.kind != "text":
            raise ConfigError(f"{where}: needs text data and a transformer student; the data is a {bundle.spec.kind}")
        if bundle.teacher_view is not None:
            raise ConfigError(
                f"{where}: the teacher and the student tokenise differently, so their attention maps do not align; "
                "set data.tokenizer: teacher (the student reads the teacher's token ids) or drop attention_kd"
            )


@LOSSES.register("attention_kd")
class AttentionKD(Objective):
    """MiniLM / TinyBERT self-attention distillation: KL(A_T ‖ A_S) of the last layers' attention.

    Both sides are the pseudo-layer ``attention:G``: the last layer's attention averaged into
    ``heads`` groups G of consecutive heads, (B, G, L, L). The teacher's is computed once
    into the soft-label cache (N, G, L, L); the student's is recorded from the training
    forward by the trainer's tap (a hook on the student's ``attention_layer``, see
    :mod:`distilens.models.tap`) and arrives as ``step.student_features``. See
    :func:`distill.text_losses.attention_kd_loss`. The teacher and the student must read the
    same token ids (the same tokenizer and ``data.max_length``).

    Cache size: N·G·L²·4 bytes (fp32; half with ``distill.cache.dtype: fp16``), e.g. 10,000
    snippets at L = 64: 164 MB with ``heads: 1``, 1.97 GB with MiniLM's 12 heads; hence the
    default of 1 group (the per-head mapping of the papers needs equal head counts anyway).

    Args:
        weight: Weight in the sum of objectives.
        heads: Head groups G compared: 1 averages the heads on both sides (any head
            counts); G = H_s = H_t is MiniLM's per-head loss; otherwise G must divide both.

    Example:
        >>> objs = [KD(), CE(weight=0.1), AttentionKD(weight=1.0, heads=1)]
    """

    name = "attention_kd"
    needs = frozenset({"student_features", "teacher_features", "token_mask"})

    def __init__(self, weight: float = 1.0, heads: int = 1) -> None:
        super().__init__(weight)
        if int(heads) != heads or heads < 1:
            raise ValueError(f"heads must be an integer ≥ 1, got {heads}")
        self.heads = int(heads)
        self.student_layer = self.teacher_layer = f"{ATTENTION_PREFIX}{self.heads}"

    def forward(self, step: StepTensors) -> Tensor:
        student = step.require("student_features", self.name)  # (B, G, L, L), already grouped
        teacher = step.require("teacher_features", self.name)
        return attention_kd_loss(student, teacher, step.require("token_mask", self.name), groups=self.heads)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, heads={self.heads}"
