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

from .objectives import KD, LOSSES, StepTensors

__all__ = ["LeafKD"]


@LOSSES.register("leaf_kd")
class LeafKD(KD):
    """Σ_ℓ P^ℓ(x) · H(softmax(t/T), Q^ℓ): each leaf's cross-entropy with the soft targets, path-weighted.

    For a ``soft_tree`` student (which has ``paper_loss``) this is the tree's own loss;
    any other student counts as a tree with one leaf reached with probability 1, for which
    it is H(softmax(t/T), softmax(s)) — the cross-entropy with the teacher's soft targets,
    the student untempered.

    Args:
        weight: Weight in the sum of objectives.
        temperature: Temperature T > 0 of the teacher's soft targets.

    Validation, options and ``repr`` are KD's; only the loss differs.
    """

    name = "leaf_kd"
    needs = frozenset({"teacher_logits", "inputs", "student"})

    def forward(self, step: StepTensors) -> Tensor:
        teacher = step.require("teacher_logits", self.name)
        targets = (teacher.float() / self.temperature).softmax(dim=1)  # (B, C)
        student = getattr(step.student, "module", step.student)  # the model inside DDP
        paper_loss = getattr(student, "paper_loss", None)
        if callable(paper_loss):
            return paper_loss(step.require("inputs", self.name), targets)
        return -(targets * step.student_logits.float().log_softmax(dim=1)).sum(dim=1).mean()
