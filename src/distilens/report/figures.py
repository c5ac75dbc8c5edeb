"""Figures for the report, rendered with matplotlib's Agg backend to PNG bytes."""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..explain.comparison import Comparison  # noqa: E402

__all__ = ["row_attributions", "heatmap_png", "png_bytes", "heatmap_grid", "feature_importance_bars", "training_curves", "MODEL_COLOURS", "plt"]

# Colour-blind-safe choices: a sequential map for non-negative maps, a diverging one for signed.
_SEQUENTIAL = "viridis"
_DIVERGING = "PuOr_r"
MODEL_COLOURS = {"teacher": "#0072B2", "student": "#D55E00", "baseline": "#009E73"}


def png_bytes(fig: plt.Figure) -> bytes:
    """Render and close ``fig``."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) normalised input → (H, W) or (H, W, 3) in [0, 1] for display."""
    a = x.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min() + 1e-12)
    return a[0].numpy() if a.shape[0] == 1 else a[:3].permute(1, 2, 0).numpy()


def heatmap_grid(
    cmp: Comparison, class_names: Sequence[str], n: int = 8, order: Sequence[int] | None = None, title: str = ""
) -> bytes:
    """Rows of input | teacher map | student map | student − teacher, one colour scale per row.

    Maps are summed over channels; teacher and student share the row's symmetric (signed
    maps) or [0, max] (non-negative maps) scale, and the difference uses the same scale.
    Titles give the explained class, each model's prediction, and the row's Spearman ρ.
    """
    idx = list(order if order is not None else range(min(n, cmp.inputs.shape[0])))[:n]
    t_maps = cmp.teacher_maps.sum(1) if cmp.teacher_maps.dim() == 4 else cmp.teacher_maps
    s_maps = cmp.student_maps.sum(1) if cmp.student_maps.dim() == 4 else cmp.student_maps
    signed = bool((t_maps < 0).any() or (s_maps < 0).any())
    fig, axes = plt.subplots(len(idx), 4, figsize=(8.0, 2.0 * len(idx)), squeeze=False)
    for row, i in enumerate(idx):
        t, s = t_maps[i].cpu().numpy(), s_maps[i].cpu().numpy()
        vmax = float(max(np.abs(t).max(), np.abs(s).max(), 1e-12))
        vmin = -vmax if signed else 0.0
        cmap = _DIVERGING if signed else _SEQUENTIAL
        rho = float(cmp.scores["spearman"][i])
        axes[row, 0].imshow(_image(cmp.inputs[i]), cmap="gray")
        axes[row, 0].set_title(f"explained: {class_names[int(cmp.targets[i])]}", fontsize=8)
        axes[row, 1].imshow(t, cmap=cmap, vmin=vmin, vmax=vmax)
        axes[row, 1].set_title(f"teacher → {class_names[int(cmp.teacher_pred[i])]}", fontsize=8)
        im = axes[row, 2].imshow(s, cmap=cmap, vmin=vmin, vmax=vmax)
        axes[row, 2].set_title(f"student → {class_names[int(cmp.student_pred[i])]}  ρ={rho:.2f}", fontsize=8)
        diff = axes[row, 3].imshow(s - t, cmap=_DIVERGING, vmin=-vmax, vmax=vmax)
        axes[row, 3].set_title("student − teacher", fontsize=8)
        fig.colorbar(im, ax=axes[row, 1:3].tolist(), shrink=0.8, label="attribution")
        fig.colorbar(diff, ax=axes[row, 3], shrink=0.8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or f"{cmp.method}: same colour scale per row", fontsize=9, y=1.0)
    return png_bytes(fig)


def feature_importance_bars(cmp: Comparison, feature_names: Sequence[str], top: int = 15) -> bytes:
    """Mean |attribution| per feature for teacher and student, the teacher's top features."""
    t = cmp.teacher_maps.abs().mean(0).cpu().numpy()
    s = cmp.student_maps.abs().mean(0).cpu().numpy()
    order = np.argsort(-t)[:top][::-1]
    y = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(order) + 1.2))
    ax.barh(y + 0.2, t[order], height=0.4, color=MODEL_COLOURS["teacher"], label="teacher")
    ax.barh(y - 0.2, s[order], height=0.4, color=MODEL_COLOURS["student"], label="student")
    ax.set_yticks(y, [str(feature_names[i]) for i in order], fontsize=8)
    ax.set_xlabel(f"mean |{cmp.method}| attribution")
    ax.legend(loc="lower right")
    return png_bytes(fig)


def training_curves(history: list[dict[str, float | str]]) -> bytes:
    """Validation accuracy per epoch for every trained model; the best epoch marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    models = sorted({str(r["model"]) for r in history})
    for m in models:
        rows = [r for r in history if r["model"] == m]
        epochs = [int(r["epoch"]) for r in rows]
        acc = [100.0 * float(r["val_accuracy"]) for r in rows]
        colour = MODEL_COLOURS.get(m)
        ax.plot(epochs, acc, label=m, color=colour)
        best = int(np.argmax(acc))
        ax.plot([epochs[best]], [acc[best]], marker="o", color=colour)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return png_bytes(fig)


def heatmap_png(attribution: torch.Tensor, title: str) -> bytes:
    """One attribution map (C, H, W) as a PNG, channels summed, diverging colour scale."""
    a = attribution.detach().float().cpu()
    a = a.sum(0) if a.dim() == 3 else a
    vmax = float(a.abs().max()) or 1e-12
    fig, ax = plt.subplots(figsize=(3.2, 3.0))
    im = ax.imshow(a.numpy(), cmap=_DIVERGING, vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attribution")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return png_bytes(fig)


def row_attributions(cmp: Comparison, feature_names: Sequence[str], n: int = 4, top: int = 8) -> bytes:
    """Per-row attributions of a table: for ``n`` rows, teacher and student bars side by side
    over the row's ``top`` features by the teacher's |attribution| (signed values shown)."""
    n = min(n, cmp.inputs.shape[0])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 0.3 * top + 1.4), squeeze=False)
    for ax, i in zip(axes[0], range(n)):
        t, s = cmp.teacher_maps[i].cpu().numpy(), cmp.student_maps[i].cpu().numpy()
        order = np.argsort(-np.abs(t))[:top][::-1]
        y = np.arange(len(order))
        ax.barh(y + 0.2, t[order], height=0.4, color=MODEL_COLOURS["teacher"], label="teacher")
        ax.barh(y - 0.2, s[order], height=0.4, color=MODEL_COLOURS["student"], label="student")
        ax.axvline(0, color="#333333", lw=0.6)
        ax.set_yticks(y, [str(feature_names[j])[:18] for j in order], fontsize=6)
        ax.set_title(f"row {i}: ρ = {float(cmp.scores['spearman'][i]):.2f}", fontsize=8)
        ax.set_xlabel("attribution", fontsize=7)
    axes[0][0].legend(fontsize=6, loc="lower right")
    fig.suptitle(f"{cmp.method}: per-row attributions (signed)", fontsize=9)
    return png_bytes(fig)
