"""Figures for the report, rendered with matplotlib's Agg backend to PNG bytes."""

from __future__ import annotations

import contextlib
import io
import textwrap
from typing import Iterator, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.text import Text  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..explain.comparison import Comparison  # noqa: E402

__all__ = [
    "row_attributions", "heatmap_png", "grey_background", "png_bytes", "heatmap_grid", "overlay", "spread_by_class",
    "collect_text_overlaps",
    "text_overlaps", "feature_importance_bars", "training_curves", "MODEL_COLOURS", "plt",
]

# Colour-blind-safe choices: a sequential map for non-negative maps, a diverging one for signed.
_SEQUENTIAL = "viridis"
_DIVERGING = "PuOr_r"
MODEL_COLOURS = {"teacher": "#0072B2", "student": "#D55E00", "baseline": "#009E73"}


def png_bytes(fig: plt.Figure) -> bytes:
    """Render and close ``fig``; inside :func:`collect_text_overlaps`, its overlapping texts are recorded."""
    buf = io.BytesIO()
    try:
        if _OVERLAPS:
            fig.canvas.draw()  # lays the figure out (constrained layout) so text boxes are final
            _OVERLAPS[-1].extend(text_overlaps(fig))
        fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


#: Open collectors of :func:`collect_text_overlaps` (innermost last).
_OVERLAPS: list[list[tuple[str, str]]] = []


@contextlib.contextmanager
def collect_text_overlaps() -> Iterator[list[tuple[str, str]]]:
    """Record every pair of intersecting texts in the figures rendered inside the block.

    Example:
        >>> with collect_text_overlaps() as overlaps:
        ...     write_run_report("runs/digits")
        >>> assert not overlaps, overlaps
    """
    found: list[tuple[str, str]] = []
    _OVERLAPS.append(found)
    try:
        yield found
    finally:
        _OVERLAPS.remove(found)


def text_overlaps(fig: plt.Figure, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of drawn texts (titles, labels, tick labels, legend entries, annotations) whose boxes intersect.

    Boxes are the renderer's window extents of a laid-out figure, each shrunk by
    ``tolerance`` pixels so that texts that merely touch do not count.
    """
    renderer = fig.canvas.get_renderer()
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks() for t in (tick.label1, tick.label2)}
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks]
    for ax in fig.axes:  # tick labels: only those of the ticks in view (the locator also returns a few beyond)
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(1.0, abs(hi - lo))
            for locs, labels in ((axis.get_majorticklocs(), axis.get_majorticklabels()),
                                 (axis.get_minorticklocs(), axis.get_minorticklabels())):
                texts += [t for loc, t in zip(locs, labels) if lo - slack <= loc <= hi + slack]
    boxes = []
    for t in texts:
        if not t.get_visible() or not t.get_text().strip():
            continue
        box = t.get_window_extent(renderer)
        if box.width > 2 * tolerance and box.height > 2 * tolerance:
            boxes.append((t.get_text(), box.expanded(1.0, 1.0).padded(-tolerance)))
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]


def _image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) normalised input → (H, W) or (H, W, 3) in [0, 1] for display."""
    a = x.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min() + 1e-12)
    return a[0].numpy() if a.shape[0] == 1 else a[:3].permute(1, 2, 0).numpy()


def grey_background(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) input → (H, W) grey in [0, 1]: the background of an overlay."""
    a = _image(x)
    return a if a.ndim == 2 else a.mean(-1)


def _flat(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, H, W), channels summed; (N, H, W) as it is."""
    return maps.sum(1) if maps.dim() == 4 else maps


def overlay(ax: plt.Axes, image: np.ndarray, heat: np.ndarray, cmap: str, vmin: float, vmax: float) -> None:
    """Draw ``heat`` over the grey ``image``: colour by value, opacity by |value| (so the input shows through).

    A map on a coarser or finer grid than the image is stretched over it.
    """
    h, w = image.shape[:2]
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    rgba = matplotlib.colormaps[cmap](Normalize(vmin, vmax)(heat))
    scale = max(abs(vmin), abs(vmax), 1e-12)
    rgba[..., 3] = np.clip(np.abs(heat) / scale, 0.0, 1.0) * 0.85
    ax.imshow(rgba, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def spread_by_class(classes: torch.Tensor, n: int) -> list[int]:
    """Up to ``n`` positions taking the classes in turn (first of each class, then second, …).

    A sample sorted by class (an image folder's test split) still shows every class.
    """
    pools: dict[int, list[int]] = {}
    for i, c in enumerate(classes.tolist()):
        pools.setdefault(int(c), []).append(i)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(n, len(classes)):
        for pool in pools.values():
            if depth < len(pool) and len(chosen) < n:
                chosen.append(pool[depth])
        depth += 1
    return chosen


def _name(names: Sequence[str], i: int | torch.Tensor) -> str:
    """A class name, wrapped (never cut) to fit a gallery column."""
    return "\n".join(textwrap.wrap(str(names[int(i)]), 22)) or "?"


def heatmap_grid(
    cmp: Comparison,
    class_names: Sequence[str],
    n: int = 8,
    order: Sequence[int] | None = None,
    maps: Mapping[str, torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
) -> bytes:
    """Rows of input | teacher | student | baseline | student − teacher, the maps over the input.

    Each map is drawn over the grey input, colour by value and opacity by magnitude. Maps are
    summed over channels; the models of a row share one colour scale (symmetric for signed
    maps, [0, max] otherwise), and the difference uses the same scale. Column titles give the
    explained class, each model's prediction and the student's Spearman ρ with the teacher.

    Args:
        cmp: The comparison (its inputs, targets, predictions and maps).
        class_names: Names of the classes (wrapped, never cut).
        n: Rows when ``order`` is not given: the classes taken in turn (:func:`spread_by_class`).
        order: Positions in ``cmp`` to draw, in this order.
        labels: (N,) the inputs' true classes: the sample is spread over them and each row
            names it; default the explained class.
        maps: Role → (N, …) maps to draw; default teacher and student. A ``baseline`` entry
            (the label-only student) adds its column.
    """
    maps = dict(maps or {"teacher": cmp.teacher_maps, "student": cmp.student_maps})
    roles = [r for r in ("teacher", "student", "baseline") if r in maps]
    truth = cmp.targets if labels is None else labels
    idx = list(order if order is not None else spread_by_class(truth, n))[:n]
    flat = {r: _flat(m) for r, m in maps.items()}
    signed = any(bool((m < 0).any()) for m in flat.values())
    cmap = _DIVERGING if signed else _SEQUENTIAL
    preds = {"teacher": cmp.teacher_pred, "student": cmp.student_pred}
    cols = len(roles) + 2
    fig, axes = plt.subplots(len(idx), cols, figsize=(2.15 * cols + 0.6, 2.25 * len(idx)), squeeze=False,
                             layout="constrained")
    for row, i in enumerate(idx):
        heat = {r: flat[r][i].cpu().numpy() for r in roles}
        vmax = float(max(max(np.abs(h).max() for h in heat.values()), 1e-12))
        vmin = -vmax if signed else 0.0
        background = grey_background(cmp.inputs[i])
        image = _image(cmp.inputs[i])
        axes[row, 0].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        axes[row, 0].set_title(f"true: {_name(class_names, truth[i])}\nexplained: {_name(class_names, cmp.targets[i])}",
                               fontsize=8)
        for col, role in enumerate(roles, start=1):
            overlay(axes[row, col], background, heat[role], cmap, vmin, vmax)
            title = role if role not in preds else f"{role} → {_name(class_names, preds[role][i])}"
            if role == "student":
                rho = float(cmp.scores["spearman"][i])
                title += "\nρ undefined (a flat map)" if np.isnan(rho) else f"\nρ = {rho:.2f}"
            axes[row, col].set_title(title, fontsize=8)
        diff = heat["student"] - heat["teacher"] if "student" in heat and "teacher" in heat else np.zeros_like(background)
        overlay(axes[row, -1], background, diff, _DIVERGING, -vmax, vmax)
        axes[row, -1].set_title("student − teacher", fontsize=8)
        bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=axes[row, 1:len(roles) + 1].tolist(),
                           shrink=0.8, aspect=15)
        bar.ax.tick_params(labelsize=6)
        if row == 0:
            bar.set_label("attribution", fontsize=7)
    return png_bytes(fig)


def feature_importance_bars(cmp: Comparison, feature_names: Sequence[str], top: int = 15) -> bytes:
    """Mean |attribution| per feature for teacher and student, the teacher's top features (full names)."""
    t = cmp.teacher_maps.abs().mean(0).cpu().numpy()
    s = cmp.student_maps.abs().mean(0).cpu().numpy()
    order = np.argsort(-t)[:top][::-1]
    y = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(order) + 1.2), layout="constrained")
    ax.barh(y + 0.2, t[order], height=0.4, color=MODEL_COLOURS["teacher"], label="teacher")
    ax.barh(y - 0.2, s[order], height=0.4, color=MODEL_COLOURS["student"], label="student")
    ax.set_yticks(y, [str(feature_names[i]) for i in order], fontsize=8)
    ax.set_xlabel(f"mean |{cmp.method}| attribution")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # beside the bars, never on them
    return png_bytes(fig)


def training_curves(history: list[dict[str, float | str]]) -> bytes:
    """Validation accuracy per epoch for every trained model; the best epoch marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
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


def heatmap_png(attribution: torch.Tensor, title: str, image: torch.Tensor | None = None) -> bytes:
    """One attribution map (C, H, W) as a PNG, channels summed, diverging colour scale.

    With ``image`` (C, H, W), the map is drawn over it (:func:`overlay`) beside the input.
    """
    a = attribution.detach().float().cpu()
    a = (a.sum(0) if a.dim() == 3 else a).numpy()
    vmax = float(np.abs(a).max()) or 1e-12
    if image is None:
        fig, ax = plt.subplots(figsize=(3.2, 3.0), layout="constrained")
        im = ax.imshow(a, cmap=_DIVERGING, vmin=-vmax, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        fig, (left, ax) = plt.subplots(1, 2, figsize=(5.6, 3.0), layout="constrained")
        shown = _image(image)
        left.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        left.set_xticks([])
        left.set_yticks([])
        left.set_title("input", fontsize=8)
        overlay(ax, grey_background(image), a, _DIVERGING, -vmax, vmax)
        im = ScalarMappable(Normalize(-vmax, vmax), _DIVERGING)
    fig.colorbar(im, ax=ax, shrink=0.8, label="attribution")
    ax.set_title("\n".join(textwrap.wrap(title, 40)), fontsize=8)
    return png_bytes(fig)


def row_attributions(cmp: Comparison, feature_names: Sequence[str], n: int = 4, top: int = 8) -> bytes:
    """Per-row attributions of a table: for ``n`` rows, teacher and student bars side by side
    over the row's ``top`` features by the teacher's |attribution| (signed values shown)."""
    n = min(n, cmp.inputs.shape[0])
    cols = min(n, 2)  # two panels a line: full feature names fit beside the bars
    lines = -(-n // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(10.0, (0.3 * top + 1.2) * lines), squeeze=False, layout="constrained")
    for k, i in enumerate(range(n)):
        ax = axes[k // cols][k % cols]
        t, s = cmp.teacher_maps[i].cpu().numpy(), cmp.student_maps[i].cpu().numpy()
        order = np.argsort(-np.abs(t))[:top][::-1]
        y = np.arange(len(order))
        ax.barh(y + 0.2, t[order], height=0.4, color=MODEL_COLOURS["teacher"], label="teacher")
        ax.barh(y - 0.2, s[order], height=0.4, color=MODEL_COLOURS["student"], label="student")
        ax.axvline(0, color="#333333", lw=0.6)
        ax.set_yticks(y, ["\n".join(textwrap.wrap(str(feature_names[j]), 28)) for j in order], fontsize=7)
        ax.set_title(f"row {i}: ρ = {float(cmp.scores['spearman'][i]):.2f}", fontsize=8)
        ax.set_xlabel("attribution (signed)", fontsize=7)
    for k in range(n, lines * cols):
        axes[k // cols][k % cols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    return png_bytes(fig)
