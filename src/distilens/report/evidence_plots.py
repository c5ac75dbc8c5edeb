"""Figures of the evidence that distillation moved the student's explanations: per sample, per gallery, per seed.

* :func:`agreement_pairs` — per method, each explained sample's agreement with the teacher:
  the label-only student's (x) against the distilled student's (y). Above the diagonal,
  distillation brought the map closer to the teacher's.
* :func:`moved_gallery` — the samples where it moved the most, towards or away: input,
  teacher, distilled student and label-only student side by side.
* :func:`seed_differences` — over seeds: student − label-only per seed, per metric, with the
  mean and its t-interval.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..explain.comparison import Comparison
from .figures import MODEL_COLOURS, grey_background, overlay, plt, png_bytes

__all__ = ["agreement_pairs", "moved_gallery", "evidence_figures", "seed_differences"]


def agreement_pairs(cmp: Comparison, score: str = "spearman") -> bytes:
    """Per control (label-only student, plain-KD student): each sample's agreement with the teacher, control (x) vs student (y)."""
    controls = [c for c in ("baseline", "plain_kd") if c in cmp.others]
    fig, axes = plt.subplots(1, len(controls), figsize=(3.6 * len(controls) + 0.3, 3.6), squeeze=False)
    for ax, control in zip(axes[0], controls):
        x = cmp.others[control].scores[score].double().numpy()
        y = cmp.scores[score].double().numpy()
        ok = ~(np.isnan(x) | np.isnan(y))
        x, y = x[ok], y[ok]
        lo = float(min(x.min(initial=0.0), y.min(initial=0.0)))
        ax.plot([lo, 1], [lo, 1], color="#888", lw=0.8, zorder=0)
        ax.scatter(x, y, s=12, alpha=0.6, color=MODEL_COLOURS["student"], edgecolor="none")
        name = "label-only" if control == "baseline" else "plain-KD"
        ax.set_title(f"{cmp.method}: above the line on {int((y > x).sum())}, below on {int((y < x).sum())}", fontsize=8)
        ax.set_xlabel(f"{name} student's {score} with the teacher", fontsize=8)
        ax.set_ylabel(f"distilled student's {score} with the teacher", fontsize=8)
        ax.set_xlim(lo, 1.0)
        ax.set_ylim(lo, 1.0)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def evidence_figures(cmp: Comparison, class_names: Sequence[str], *, pixels: bool, n: int = 6) -> dict[str, bytes]:
    """The method's evidence figures where the label-only student was explained: ``pairs``, and for
    pixel maps the galleries ``moved_towards`` and ``moved_away`` (:meth:`Comparison.galleries`)."""
    if "baseline" not in cmp.others:
        return {}
    out = {"pairs": agreement_pairs(cmp)}
    if pixels:
        galleries = cmp.galleries(n)
        for key, words in (("moved_towards", "most towards"), ("moved_away", "most away from")):
            if galleries.get(key):
                out[key] = moved_gallery(cmp, class_names, galleries[key],
                                         f"{cmp.method}: where distillation moved the student's map {words} the teacher's")
    return out


def moved_gallery(cmp: Comparison, class_names: Sequence[str], order: Sequence[int], title: str, control: str = "baseline") -> bytes:
    """Rows of input | teacher | distilled student | label-only student, each map drawn over the input
    (:func:`~.figures.overlay`) on its own colour scale: agreement is a rank correlation, so each
    map's shape is what is compared, not its size; ρ in the titles."""
    maps = {role: cmp.role_maps(role) for role in ("teacher", "student")}
    maps[control] = cmp.others[control].maps
    maps = {k: (v.sum(1) if v.dim() == 4 else v).cpu().numpy() for k, v in maps.items()}
    signed = any(bool((m < 0).any()) for m in maps.values())
    cmap = "PuOr_r" if signed else "viridis"
    rho_s, rho_c = cmp.scores["spearman"], cmp.others[control].scores["spearman"]
    fig, axes = plt.subplots(len(order), 4, figsize=(9.6, 2.3 * len(order)), squeeze=False, layout="constrained")
    for row, i in enumerate(order):
        background = grey_background(cmp.inputs[i])
        axes[row, 0].imshow(background, cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(f"explained: {class_names[int(cmp.targets[i])]}", fontsize=8)
        panels = (("teacher", "teacher"), ("student", f"distilled  ρ={float(rho_s[i]):.2f}"),
                  (control, f"label-only  ρ={float(rho_c[i]):.2f}"))
        for col, (role, label) in enumerate(panels, start=1):
            vmax = float(np.abs(maps[role][i]).max()) or 1e-12
            overlay(axes[row, col], background, maps[role][i], cmap, -vmax if signed else 0.0, vmax)
            axes[row, col].set_title(label, fontsize=8)
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
    fig.suptitle(title, fontsize=9)
    return png_bytes(fig)


def _rows(summary: Mapping[str, Any], control: str) -> list[tuple[str, list[float | None], Mapping[str, Any]]]:
    """(label, per-seed differences, paired entry) for accuracy, agreement and each method's Spearman."""
    models = summary.get("models") or {}
    key = f"student_minus_{control}"
    rows = []
    for metric, label in (("accuracy", "accuracy (points)"), ("agreement", "top-1 agreement with teacher (points)")):
        pd = ((summary.get("paired") or {}).get(key) or {}).get(metric)
        s = ((models.get("student") or {}).get(metric) or {}).get("values") or []
        c = ((models.get(control) or {}).get(metric) or {}).get("values") or []
        if pd and s and c:
            rows.append((label, [None if a is None or b is None else 100 * (a - b) for a, b in zip(s, c)],
                         {k: (None if pd.get(k) is None else 100 * pd[k]) for k in ("mean", "t_ci_low", "t_ci_high")}))
    for method, block in (summary.get("explanations") or {}).items():
        pd = ((block.get("paired") or {}).get(key) or {}).get("spearman")
        spreads = block.get("spread") or {}
        s = ((spreads.get("student") or {}).get("spearman") or {}).get("values") or []
        c = ((spreads.get(control) or {}).get("spearman") or {}).get("values") or []
        if pd and s and c:
            rows.append((f"{method} Spearman", [None if a is None or b is None else a - b for a, b in zip(s, c)], pd))
    return rows


def seed_differences(summary: Mapping[str, Any], control: str = "baseline") -> bytes | None:
    """Student − ``control`` per seed (dots), their mean and 95% t-interval (bar), one row per metric; ``None`` without pairs."""
    rows = _rows(summary, control)
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, 0.9 * len(rows) + 0.6), squeeze=False)
    for ax, (label, diffs, pd) in zip(axes[:, 0], rows):
        values = [d for d in diffs if d is not None and math.isfinite(d)]
        ax.axvline(0.0, color="#888", lw=0.8)
        ax.scatter(values, [0] * len(values), s=22, color=MODEL_COLOURS["student"], zorder=3)
        if pd.get("t_ci_low") is not None and pd.get("t_ci_high") is not None:
            ax.plot([pd["t_ci_low"], pd["t_ci_high"]], [0.35, 0.35], color="#333", lw=2)
        if pd.get("mean") is not None:
            ax.plot([pd["mean"]], [0.35], marker="|", markersize=12, color="#333")
        ax.set_yticks([])
        ax.set_ylim(-0.5, 0.8)
        ax.set_title(label, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"student − {control.replace('_', ' ')}, per seed (dots); mean and 95% t-interval (bar)", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
