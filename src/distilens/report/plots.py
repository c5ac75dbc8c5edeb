"""Report figures about training and predictions (numpy in, PNG bytes out)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from .figures import MODEL_COLOURS, plt, png_bytes

__all__ = [
    "loss_curves",
    "confusion_matrices",
    "reliability_diagrams",
    "per_class_delta",
    "class_similarity",
    "agreement_distribution",
    "faithfulness_curves",
    "sanity_plot",
    "sanity_passes",
    "SANITY_PASS",
]


def loss_curves(history: list[dict[str, Any]]) -> bytes:
    """Per model: training loss per term (left) and validation accuracy (right), best epoch marked."""
    models = list(dict.fromkeys(str(r["model"]) for r in history))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3), layout="constrained")
    skip = {"model", "epoch", "lr", "train_accuracy", "val_accuracy", "val_loss", "time_s"}
    styles = ["-", "--", ":", "-."]
    for m in models:
        rows = [r for r in history if r["model"] == m]
        epochs = [int(r["epoch"]) for r in rows]
        colour = MODEL_COLOURS.get(m)
        # Each loss term on its own; the total only when it is the one term there is.
        terms = [k for k in rows[0] if k not in skip and k != "loss"] or ["loss"]
        for i, term in enumerate(terms):
            values = [float(r[term]) for r in rows if term in r and r[term] != ""]
            if len(values) == len(epochs):
                axes[0].plot(epochs, values, styles[i % len(styles)], color=colour, label=f"{m}: {term}")
        acc = [100.0 * float(r["val_accuracy"]) for r in rows]
        axes[1].plot(epochs, acc, color=colour, label=m)
        best = int(np.argmax(acc))
        axes[1].plot([epochs[best]], [acc[best]], marker="o", color=colour)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss (per term, log scale)")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation accuracy (%)")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    return png_bytes(fig)


def _confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (target, pred), 1)
    return m


def confusion_matrices(logits: dict[str, np.ndarray], targets: np.ndarray, class_names: Sequence[str]) -> bytes:
    """Confusion matrices side by side (rows: true class, columns: predicted), counts shown."""
    k = len(class_names)
    fig, axes = plt.subplots(1, len(logits), figsize=(3.4 * len(logits), 3.6), squeeze=False, layout="constrained")
    for ax, (name, z) in zip(axes[0], logits.items()):
        m = _confusion(z.argmax(1), targets, k)
        ax.imshow(m, cmap="Blues")
        ax.set_title(name, fontsize=9)
        ticks = range(k)
        labels = [str(c) for c in class_names]  # whole names: the layout makes room
        ax.set_xticks(ticks, labels, fontsize=6, rotation=90)
        ax.set_yticks(ticks, labels, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if m[i, j]:
                        ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                                color="white" if m[i, j] > m.max() / 2 else "black")
    return png_bytes(fig)


def _softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = z / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def reliability_diagrams(logits: dict[str, np.ndarray], targets: np.ndarray, n_bins: int = 10) -> bytes:
    """Accuracy against confidence in equal-width bins, per model (top); the inputs per bin (bottom).

    The diagonal is perfect calibration; a point resting on few inputs says little, hence the counts.
    """
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.2, 5.0), sharex=True, height_ratios=(3, 1), layout="constrained")
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, label="perfect calibration")
    edges = np.linspace(0, 1, n_bins + 1)
    width = 1.0 / n_bins / max(1, len(logits))
    for k, (name, z) in enumerate(logits.items()):
        p = _softmax(z)
        conf, pred = p.max(1), p.argmax(1)
        correct = pred == targets
        bins = np.clip(np.ceil(conf * n_bins).astype(int), 1, n_bins) - 1
        xs, ys = [], []
        for b in range(n_bins):
            sel = bins == b
            if sel.any():
                xs.append(conf[sel].mean())
                ys.append(correct[sel].mean())
        colour = MODEL_COLOURS.get(name)
        ax.plot(xs, ys, marker="o", color=colour, label=name)
        n = np.bincount(bins, minlength=n_bins)
        counts.bar(edges[:-1] + (k + 0.5) * width, n, width=width, color=colour)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    counts.set_xlabel("confidence (top probability)")
    counts.set_ylabel("inputs", fontsize=8)
    counts.set_yscale("symlog", linthresh=10)
    counts.grid(alpha=0.3, axis="y")
    return png_bytes(fig)


def per_class_delta(logits: dict[str, np.ndarray], targets: np.ndarray, class_names: Sequence[str]) -> bytes:
    """Per-class accuracy of each small model minus the teacher's, in points."""
    k = len(class_names)
    acc = {}
    for name, z in logits.items():
        pred = z.argmax(1)
        acc[name] = np.array([100.0 * (pred[targets == c] == c).mean() if (targets == c).any() else np.nan for c in range(k)])
    others = [n for n in logits if n != "teacher"]
    fig, ax = plt.subplots(figsize=(min(10.0, max(5.5, 0.45 * k + 2.5)), 3.2), layout="constrained")
    width = 0.8 / max(1, len(others))
    for i, name in enumerate(others):
        ax.bar(np.arange(k) + i * width - 0.4 + width / 2, acc[name] - acc["teacher"], width,
               color=MODEL_COLOURS.get(name), label=name)
    ax.axhline(0, color="#333333", lw=0.8)
    long = k > 10 or max(len(str(c)) for c in class_names) > 4
    ax.set_xticks(range(k), [str(c) for c in class_names], fontsize=7, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_ylabel("accuracy − teacher's (points)")
    ax.set_xlabel("class")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars, never on them
    ax.grid(alpha=0.3, axis="y")
    return png_bytes(fig)


def class_similarity(soft_logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str], temperature: float) -> bytes:
    """The teacher's mean soft label per true class at the KD temperature: the "dark knowledge"."""
    k = len(class_names)
    p = _softmax(soft_logits, temperature)
    m = np.stack([p[labels == c].mean(0) if (labels == c).any() else np.zeros(k) for c in range(k)])
    off = m.copy()
    np.fill_diagonal(off, np.nan)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), layout="constrained")
    im = axes[0].imshow(m, cmap="viridis", vmin=0, vmax=1)
    axes[0].set_title(f"mean soft label, T = {temperature:g}", fontsize=9)
    fig.colorbar(im, ax=axes[0], shrink=0.8, label="probability")
    im = axes[1].imshow(off, cmap="viridis")
    axes[1].set_title("off-diagonal only (what labels do not say)", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="probability")
    labels_txt = [str(c) for c in class_names]
    for ax in axes:
        ax.set_xticks(range(k), labels_txt, fontsize=6, rotation=90)
        ax.set_yticks(range(k), labels_txt, fontsize=6)
        ax.set_xlabel("class the teacher gives mass to", fontsize=8)
        ax.set_ylabel("true class", fontsize=8)
    return png_bytes(fig)


def agreement_distribution(scores: dict[str, np.ndarray], method: str) -> bytes:
    """Histograms of the per-sample agreement scores of one method, the mean marked."""
    names = [n for n in ("spearman", "topk_iou", "cosine", "ssim") if n in scores]
    fig, axes = plt.subplots(1, len(names), figsize=(2.5 * len(names) + 0.5, 2.6), squeeze=False, layout="constrained")
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        v = scores[name][~np.isnan(scores[name])]
        ax.hist(v, bins=20, range=(-1, 1) if name in ("spearman", "cosine") else (0, 1), color="#0072B2")
        ax.set_title(name, fontsize=8)
        if v.size:
            ax.axvline(float(v.mean()), color="#D55E00", ls="--", lw=1)
        ax.set_xlabel(f"score (mean {v.mean():.2f})" if v.size else "score", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.set_ylabel("samples", fontsize=8)
    return png_bytes(fig)


def faithfulness_curves(faith: dict[str, dict[str, Any]], method: str) -> bytes:
    """Mean deletion and insertion curves of teacher and student (Petsiuk et al. 2018)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.2), layout="constrained")
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for role, block in faith.items():
            curve = block.get(f"{kind}_curve")
            if curve:
                x = np.linspace(0, 100, len(curve))
                ax.plot(x, curve, color=MODEL_COLOURS.get(role),
                        label=f"{role} (AUC {block.get(f'{kind}_auc', float('nan')):.2f})")
        ax.set_title(f"{kind}: {'lower' if kind == 'deletion' else 'higher'} is more faithful", fontsize=9)
        ax.set_xlabel("features removed (%)" if kind == "deletion" else "features inserted (%)")
        ax.set_ylabel("probability of the explained class", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png_bytes(fig)


#: The sanity check passes when the maps, all layers randomised, keep less |Spearman| than this.
SANITY_PASS = 0.5


def sanity_passes(block: dict[str, Any]) -> bool | None:
    """Whether one model's maps changed as its layers were randomised (Adebayo et al. 2018).

    Passes when the |Spearman| similarity to the original maps, with every listed layer
    randomised, is below :data:`SANITY_PASS`; ``None`` when it is undefined.
    """
    values = [v for v in block.get("abs_spearman", []) if v is not None]
    return None if not values else bool(values[-1] < SANITY_PASS)


def sanity_plot(sanity: dict[str, Any]) -> bytes:
    """Similarity to the original maps as layers are randomised from the top (Adebayo et al. 2018), pass/fail per model."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4), layout="constrained")
    for role in ("teacher", "student"):
        block = sanity.get(role)
        if not block:
            continue
        x = np.arange(1, len(block["layers"]) + 1)
        verdict = {True: "passes", False: "FAILS", None: "undefined"}[sanity_passes(block)]
        ax.plot(x, _floats(block["abs_spearman"]), marker="o", color=MODEL_COLOURS.get(role),
                label=f"{role}: |Spearman| ({verdict})")
        if block.get("ssim") and any(v is not None for v in block["ssim"]):
            ax.plot(x, _floats(block["ssim"]), marker="s", ls="--", color=MODEL_COLOURS.get(role), label=f"{role}: SSIM")
    ax.axhline(SANITY_PASS, color="#777777", ls=":", lw=1, label=f"pass: below {SANITY_PASS:g} at the end")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole layers only
    ax.set_xlabel("layers randomised, from the output down")
    ax.set_ylabel("similarity to original maps")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(f"{sanity.get('method', '')}: similarity should fall as weights are randomised", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png_bytes(fig)


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
