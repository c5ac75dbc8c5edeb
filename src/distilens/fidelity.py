"""Does the student predict like the teacher, more than the label-only student does? Per sample, paired.

Stanton et al. 2021 ("Does Knowledge Distillation Really Work?") separate *fidelity* — how
closely the student matches the teacher's predictions — from accuracy. metrics.json already
holds each model's mean top-1 agreement with the teacher and its mean KL(p_T ‖ p_model);
this module gives the same per test sample, and the paired difference student − control
(the label-only ``baseline``, and in runs with an explanation-guided loss the ``plain_kd``
student) with a bootstrap 95% interval and the Wilcoxon signed-rank p-value
(:func:`distilens.stats.paired_difference`), for accuracy, agreement and KL.

Example:
    >>> block = fidelity_block(logits["teacher"], targets, {"student": s, "baseline": b})
    >>> block["student_minus_baseline"]["agreement"]["ci_low"]
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from .distill.functional import kl_divergence
from .explain.evidence import CONTROLS
from .stats import paired_difference

__all__ = ["per_sample_fidelity", "fidelity_block", "logits_from_tensors", "FIDELITY_CONTROLS"]

#: The models the student is compared with, sample by sample, when their logits are there.
FIDELITY_CONTROLS = CONTROLS  # the controls the explanations are paired with, paired the same way here


def per_sample_fidelity(teacher_logits: Tensor, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Per test sample: ``accuracy`` (1 if right), ``agreement`` (1 if the top class is the teacher's), ``predictive_kl``.

    Args:
        teacher_logits, logits: (N, C) raw scores of the teacher and of the model.
        targets: (N,) true classes.

    Returns:
        Name → (N,) float64; ``predictive_kl`` is KL(p_T ‖ p_model) at temperature 1, in nats
        (its mean is metrics.json's ``predictive_kl``).
    """
    pred = logits.argmax(1)
    return {
        "accuracy": (pred == targets).double(),
        "agreement": (pred == teacher_logits.argmax(1)).double(),
        "predictive_kl": kl_divergence(teacher_logits.float(), logits.float()).double(),
    }


def fidelity_block(
    teacher_logits: Tensor, targets: Tensor, logits: Mapping[str, Tensor], *, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """metrics.json's ``fidelity``: student − control, per test sample, for accuracy, agreement and KL.

    Args:
        teacher_logits: (N, C) the teacher's test logits.
        targets: (N,) test labels.
        logits: Role → (N, C) test logits; ``student`` and any of :data:`FIDELITY_CONTROLS`.
        seed, n_boot: The bootstrap's (see :func:`distilens.stats.paired_difference`).

    Returns:
        ``{"n": N, "student_minus_baseline": {"accuracy": {...}, "agreement": {...},
        "predictive_kl": {...}}, ...}``, each entry a :class:`~distilens.stats.PairedDifference`
        as JSON (a negative KL difference means the student is closer to the teacher).
        Without a student or a control: ``{}``.

    Example:
        >>> fidelity_block(t, y, {"student": t.clone(), "baseline": b})["student_minus_baseline"]["agreement"]["mean"]
    """
    if "student" not in logits:
        return {}
    mine = per_sample_fidelity(teacher_logits, logits["student"], targets)
    out: dict[str, Any] = {"n": int(targets.shape[0])}
    for role in FIDELITY_CONTROLS:
        if logits.get(role) is None:
            continue
        theirs = per_sample_fidelity(teacher_logits, logits[role], targets)
        out[f"student_minus_{role}"] = {
            name: paired_difference(mine[name], theirs[name], n_boot=n_boot, seed=seed).to_json() for name in mine
        }
    return out if len(out) > 1 else {}


def logits_from_tensors(tensors: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``(targets, role → logits)`` from predictions.safetensors' ``test/…`` keys."""
    targets = tensors["test/targets"]
    return targets, {k[len("test/"):]: v for k, v in tensors.items() if k.startswith("test/") and k != "test/targets"}

