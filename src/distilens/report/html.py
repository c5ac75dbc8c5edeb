"""The self-contained HTML report: Jinja2 with autoescape, PNGs inlined as data URIs."""

from __future__ import annotations

import base64
import datetime as _dt
from pathlib import Path
from typing import Any

import jinja2

from ..io import atomic_write_text

__all__ = ["render_report", "write_report"]

_COLUMNS = [
    ("accuracy", "accuracy", "pct"),
    ("agreement", "agreement", "pct"),
    ("predictive_kl", "KL(T‖·)", "num"),
    ("ece", "ECE", "num"),
    ("params", "params", "int"),
    ("size_bytes", "size", "bytes"),
    ("flops", "FLOPs", "int"),
    ("latency_ms.batch1", "ms @1", "num"),
    ("latency_ms.batch64", "ms @64", "num"),
]


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "bytes":
        return f"{value / 1024:.1f} KiB"
    return f"{value:.3g}"


def _b64(png: bytes | None) -> str | None:
    return base64.b64encode(png).decode("ascii") if png else None


def render_report(
    metrics: dict[str, Any],
    *,
    name: str,
    config_yaml: str,
    figures: dict[str, bytes],
    repro: list[tuple[str, str]],
) -> str:
    """Render the report page as a string.

    Args:
        metrics: The metrics.json content.
        name: Run name (escaped like every other user-supplied text).
        config_yaml: The resolved config.
        figures: ``{"training": png, "<method>": png, ...}``.
        repro: (label, value) rows for the reproducibility table.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    rows = []
    for model in ("teacher", "student", "baseline"):
        if model in metrics:
            cells = [_fmt(_get(metrics[model], key), kind) for key, _, kind in _COLUMNS]
            rows.append({"model": model, "cells": cells})
    expl = metrics.get("explanations")
    methods = []
    for m in (expl or {}).get("methods", []):
        agree = m["agreement"]
        methods.append(
            {
                "method": m["method"],
                **{k: _fmt(agree.get(k), "num") for k in ("spearman", "topk_iou", "cosine")},
                "png": _b64(figures.get(m["method"])),
            }
        )
    return env.get_template("template.html.j2").render(
        name=name,
        dataset=metrics["dataset"],
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        columns=[{"label": label} for _, label, _ in _COLUMNS],
        rows=rows,
        compression=metrics.get("compression"),
        training_png=_b64(figures.get("training")),
        explanations=expl,
        methods=methods,
        repro=repro,
        config_yaml=config_yaml,
    )


def write_report(path: str | Path, html: str) -> Path:
    """Write the page atomically."""
    return atomic_write_text(path, html)
