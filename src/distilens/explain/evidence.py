"""Is the student's agreement with the teacher's explanations due to distillation? Controls, reference points, paired differences.

A student's agreement with the teacher (say Spearman 0.75) means little alone: a student of
the same architecture trained on labels alone may agree as much (small CNNs on centred
digits share a centre bias), and two teachers trained from different seeds do not agree
perfectly either. So the explain stage explains, with the same methods, inputs and targets
(the teacher's prediction):

* the **controls** — the label-only ``baseline`` and, in runs with an explanation-guided
  loss, the ``plain_kd`` student (the same distillation without that loss) — and reports the
  paired difference student − control per sample (:func:`paired_differences`);
* optionally the **reference points** — ``teacher_reseed``, a second teacher of the same
  architecture trained with another seed (the ceiling), and ``init``, the student at its
  initial weights (the floor) — and places student and baseline on that scale
  (:func:`agreement_scale`).

Ojha et al. 2023 ("What Knowledge Gets Distilled in Knowledge Distillation?") report that
KD students inherit the teacher's Grad-CAM localisation beyond label-trained ones; this is
the measurement that checks it on the user's own models.

Example:
    >>> cmp = compare(teacher, student, x, method="gradcam", others={"baseline": (baseline, x)})
    >>> paired_differences(cmp)["student_minus_baseline"]["spearman"]["ci_low"]
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..stats import paired_difference
from .comparison import Comparison

__all__ = ["CONTROLS", "REFERENCES", "ROLES", "TEACHER_VIEW_ROLES", "HEADLINE", "paired_differences", "agreement_scale"]

#: Models the student is compared with sample by sample (paired differences).
CONTROLS = ("baseline", "plain_kd")
#: The scale's reference points: the ceiling (a second teacher) and the floor (the untrained student).
REFERENCES = ("teacher_reseed", "init")
#: Every role besides teacher and student that the explain stage may explain.
ROLES = CONTROLS + REFERENCES
#: Roles that read the teacher's inputs (text: the teacher's token ids); the others read the student's.
TEACHER_VIEW_ROLES = frozenset({"teacher_reseed"})
#: The agreement score the verdict and the scale lead with.
HEADLINE = "spearman"


def paired_differences(cmp: Comparison, *, seed: int = 0, n_boot: int = 2000) -> dict[str, dict[str, dict[str, Any]]]:
    """Student − control per sample, for each agreement score and each control explained.

    Each entry is :class:`~distilens.stats.PairedDifference` as JSON: the mean difference,
    its percentile-bootstrap 95% interval, the two-sided Wilcoxon signed-rank p-value, and
    wins/ties/losses (samples where the student agrees more/as much/less than the control);
    samples where either score is undefined (NaN) are left out and counted in ``n_nan``.

    Returns:
        ``{"student_minus_baseline": {"spearman": {...}, ...}, "student_minus_plain_kd": {...}}``,
        only for the controls in ``cmp.others``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for role in CONTROLS:
        if role not in cmp.others:
            continue
        theirs = cmp.others[role].scores
        out[f"student_minus_{role}"] = {
            name: paired_difference(mine, theirs[name], n_boot=n_boot, seed=seed).to_json()
            for name, mine in cmp.scores.items() if name in theirs
        }
    return out


def agreement_scale(models: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Student and baseline placed between the floor (``init``) and the ceiling (``teacher_reseed``), per score.

    Args:
        models: ``explanations.methods[i].models``: role → ``{"agreement": {score: mean}}``.

    Returns:
        Per score: ``floor``, ``ceiling``, ``student``, ``baseline`` (mean agreement with the
        teacher, ``None`` where not explained); ``position_student`` / ``position_baseline``
        — (x − floor) / (ceiling − floor), 0 at the floor and 1 at the ceiling (with both
        references); and ``gap_closed`` — (student − baseline) / (ceiling − baseline), the
        share of the gap between label-only and teacher-vs-teacher agreement that
        distillation closes (``None`` unless the ceiling lies above the baseline). Empty
        without any reference.

    Example:
        >>> row = agreement_scale({"student": {"agreement": {"spearman": 0.6}}, "baseline": {"agreement": {"spearman": 0.5}},
        ...                        "teacher_reseed": {"agreement": {"spearman": 0.7}}})["spearman"]
        >>> round(row["gap_closed"], 2)
        0.5
    """
    if not any(r in models for r in REFERENCES):
        return {}

    def mean(role: str, score: str) -> float | None:
        value = (models.get(role) or {}).get("agreement", {}).get(score)
        return None if value is None or not math.isfinite(value) else float(value)

    out: dict[str, dict[str, float | None]] = {}
    for score in (models.get("student") or {}).get("agreement", {}):
        floor, ceiling = mean("init", score), mean("teacher_reseed", score)
        s, b = mean("student", score), mean("baseline", score)
        row: dict[str, float | None] = {"floor": floor, "ceiling": ceiling, "student": s, "baseline": b}
        span = None if floor is None or ceiling is None else ceiling - floor
        for role, x in (("student", s), ("baseline", b)):
            row[f"position_{role}"] = (x - floor) / span if x is not None and span and span > 0 else None  # type: ignore[operator]
        gap = None if ceiling is None or b is None else ceiling - b
        row["gap_closed"] = (s - b) / gap if s is not None and b is not None and gap is not None and gap > 1e-9 else None
        out[score] = row
    return out
