"""Template values for the evidence of one explanation method: every model's agreement, the paired differences, the scale.

Plain strings for ``evidence.html.j2`` (included in the report's method section and in the
seeds' summary page); nothing here builds HTML.

Example:
    >>> ctx = evidence_context(metrics["explanations"]["methods"][0])
    >>> [row["role"] for row in ctx["models"]]
    ['student', 'baseline', 'teacher_reseed', 'init']
"""

from __future__ import annotations

import math
from typing import Any, Mapping

__all__ = ["evidence_context", "ROLE_NAMES"]

#: How the report names each model compared with the teacher.
ROLE_NAMES = {
    "student": "distilled student",
    "baseline": "label-only student (control)",
    "plain_kd": "plain-KD student (control)",
    "teacher_reseed": "second teacher, another seed (ceiling)",
    "init": "untrained student (floor)",
}
_SCORES = ("spearman", "topk_iou", "cosine", "ssim")


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _interval(pd: Mapping[str, Any]) -> str:
    if "t_ci_low" in pd:
        lo, hi, kind = pd.get("t_ci_low"), pd.get("t_ci_high"), "t"
    else:
        lo, hi, kind = pd.get("ci_low"), pd.get("ci_high"), "bootstrap"
    return "–" if lo is None or hi is None else f"[{lo:+.3f}, {hi:+.3f}] ({kind})"


def evidence_context(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """Rows for one method's block (a run's ``explanations.methods[i]`` or a summary's method); ``None`` without ``models``.

    Returns:
        ``models``: per role, its name and mean agreement per score (± sd over seeds where
        the block has a ``spread``); ``paired``: per control and score, the mean difference,
        its interval, p-value, wins/ties/losses and whether it is shown; ``scale``: the
        Spearman floor, ceiling and positions; ``scores``: the column names.
    """
    models = block.get("models")
    if not models:
        return None
    student = (models.get("student") or {}).get("agreement") or {}
    scores = [s for s in _SCORES if s in student]
    spread = block.get("spread") or {}
    rows = []
    for role, entry in models.items():
        agreement = entry.get("agreement") or {}
        cells = []
        for s in scores:
            sd = ((spread.get(role) or {}).get(s) or {}).get("sd")
            cells.append(_f(agreement.get(s)) + (f" ± {sd:.2f}" if sd is not None else ""))
        rows.append({"role": ROLE_NAMES.get(role, role), "cells": cells})
    paired = []
    for key, entries in (block.get("paired") or {}).items():
        control = ROLE_NAMES.get(key.removeprefix("student_minus_"), key)
        for s in scores:
            pd = (entries or {}).get(s)
            if not pd or pd.get("mean") is None:
                continue
            lo, hi = (pd.get("t_ci_low"), pd.get("t_ci_high")) if "t_ci_low" in pd else (pd.get("ci_low"), pd.get("ci_high"))
            shown = lo is not None and hi is not None and (lo > 0 or hi < 0)
            paired.append({
                "versus": control, "score": s, "mean": f"{pd['mean']:+.3f}", "ci": _interval(pd),
                "p": _f(pd.get("p_value"), "{:.2g}"), "wtl": f"{pd.get('wins')}/{pd.get('ties')}/{pd.get('losses')}",
                "n": pd.get("n"), "shown": "shown" if shown else "not shown",
            })
    scale = (block.get("scale") or {}).get("spearman")
    scale_row = None
    if scale:
        scale_row = {k: _f(scale.get(k)) for k in ("floor", "baseline", "student", "ceiling")}
        gap = scale.get("gap_closed")
        scale_row["gap_closed"] = "–" if gap is None else f"{100 * gap:.0f}%"
    return {"scores": scores, "models": rows, "paired": paired, "scale": scale_row}
