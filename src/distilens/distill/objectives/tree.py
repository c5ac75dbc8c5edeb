"""Frosst & Hinton's soft-target loss for the soft decision tree, as a registered objective.

Frosst & Hinton (2017, "Distilling a Neural Network Into a Soft Decision Tree") train the
tree on the path-weighted leaf cross-entropy Σ_ℓ P^ℓ(x) · H(T(x), Q^ℓ) with the teacher's
soft targets T(x). Only the targets are softened: the leaves are not divided by a
temperature, unlike Hinton et al.'s KD, whose tempered student makes every leaf of a tree
that mixes leaves softer than it will be at prediction time.

Example:
    >>> objectives = [LeafKD(temperature=4.0)]
    >>> fit(tree, bundle, objectives=objectives, teacher_cache=cache, epochs=60, lr=1e-2)
"""

from __future__ import annotations

from torch import Tensor

from .. import functional as F
from .base import LOSSES, StepTensors
from .logits import KD

__all__ = ["LeafKD"]


@LOSSES.register("leaf_kd")
class LeafKD(KD):
    """Σ_ℓ P^ℓ(x) · H(softmax(t/T), Q^ℓ): each leaf's cross-entropy with the soft targets, path-weighted.

    For a ``soft_tree`` student (a :class:`~distilens.models.capabilities.LeafModel`) the
    trainer records the leaves' path probabilities from the training forward
    (``step.leaf_log_paths``, ``step.leaf_log_probs``) and this is the tree's own loss. Any
    other student counts as a tree with one leaf reached with probability 1, for which it is
    H(softmax(t/T), softmax(s)) — the cross-entropy with the teacher's soft targets, the
    student untempered.

    Args:
        weight: Weight in the sum of objectives.
        temperature: Temperature T > 0 of the teacher's soft targets.

    Validation, options and ``repr`` are KD's; only the loss differs.
    """

    name = "leaf_kd"
    needs = frozenset({"teacher_logits", "leaves"})

    def forward(self, step: StepTensors) -> Tensor:
        teacher = step.require("teacher_logits", self.name)
        targets = (teacher.float() / self.temperature).softmax(dim=1)  # (B, C)
        if step.leaf_log_paths is not None and step.leaf_log_probs is not None:
            return F.leaf_kd_loss(step.leaf_log_paths, step.leaf_log_probs, targets)
        return -(targets * step.student_logits.float().log_softmax(dim=1)).sum(dim=1).mean()
