"""The self-contained HTML page: Jinja2 with autoescape, CSS and PNGs inlined as data URIs."""

from __future__ import annotations

import base64
import datetime as _dt
from pathlib import Path
from typing import Any

import jinja2

from ..io import atomic_write_text
from .evidence_view import evidence_context

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
_SCORES = ("spearman", "kendall", "pearson", "topk_iou", "cosine", "ssim")
_FIGURES = ("training", "confusion", "reliability", "per_class", "similarity", "sanity", "tree")


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _fmt(value: Any, kind: str = "num") -> str:
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


def _method_context(entry: dict[str, Any]) -> dict[str, Any]:
    block = entry["block"]
    agree, ci = block.get("agreement", {}), block.get("agreement_ci95", {})
    scores = [
        {"name": k, "mean": _fmt(agree.get(k)), "ci": "–" if not ci.get(k) or None in ci[k] else f"[{ci[k][0]:.2f}, {ci[k][1]:.2f}]"}
        for k in _SCORES if k in agree
    ]
    faith = [
        {"role": role, **{k: _fmt(v.get(k)) for k in ("deletion_auc", "insertion_auc")}}
        for role, v in (block.get("faithfulness") or {}).items()
    ]
    local = [
        {"role": role, **{k: _fmt(v.get(k)) for k in ("mass_in_mask", "pointing_game")}}
        for role, v in (block.get("localization") or {}).items()
    ]
    figures = {k: _b64(v) for k, v in entry["figures"].items()}
    return {"method": block["method"], "n": block.get("n_samples"), "same": _fmt(block.get("same_prediction"), "pct"),
            "scores": scores, "faith": faith, "local": local, "fig": figures,
            "grid_classes": entry.get("grid_classes", []),  # reviewer (issue 19): the true classes of the sample drawn
            "ev": evidence_context(block)}  # evidence (issue 15): every model's agreement, paired differences, scale


def render_report(
    metrics: dict[str, Any],
    *,
    name: str,
    config_yaml: str,
    figures: dict[str, bytes],
    methods: list[dict[str, Any]],
    checks: list[dict[str, str]],
    missing: list[str],
    command: str | None,
    tree_paths: list[dict[str, Any]] | None = None,
    text: dict[str, Any] | None = None,
) -> str:
    """Render the page as a string; every value from the user is escaped by Jinja2.

    Args:
        metrics: metrics.json content (may be partial).
        name: Run name.
        config_yaml: The resolved config text.
        figures: Run-level PNGs: training, confusion, reliability, per_class, similarity, sanity.
        methods: Per explanation method: ``{"block": metrics block, "figures": {name: png}}``.
        checks: Verdict rows ``{what, value, status}``, status green/amber/red.
        missing: Files the run folder lacks (their sections are left out and listed).
        command: The command that made the run, if known.
        tree_paths: For a soft-tree student, decision paths of sample inputs.
        text: For text data, the word-level section (:func:`distilens.report.text.text_context`).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    rows = [
        {"model": r, "cells": [_fmt(_get(metrics[r], key), kind) for key, _, kind in _COLUMNS]}
        for r in ("teacher", "student", "baseline") if r in metrics
    ]
    env_info = metrics.get("environment", {})
    repro = [
        ("seed", str(_get(metrics, "seed") if _get(metrics, "seed") is not None else "see config")),
        ("python / torch / distilens", " / ".join(str(env_info.get(k, "?")) for k in ("python", "torch", "distilens"))),
        ("device", str(env_info.get("device", "?")) + _processes(env_info.get("processes"))),
        ("stage times (s)", ", ".join(f"{k} {v:.1f}" for k, v in (metrics.get("timing_s") or {}).items())),
        ("command", command or "distilens run config.yaml  (the config.yaml of this run folder)"),
    ]
    return env.get_template("template.html.j2").render(
        name=name,
        dataset=metrics.get("dataset"),
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        columns=[label for _, label, _ in _COLUMNS],
        rows=rows,
        checks=checks,
        compression=metrics.get("compression"),
        latency_note=_latency_note(metrics.get("latency")),
        reference=metrics.get("reference"),
        fig={**dict.fromkeys(_FIGURES), **{k: _b64(v) for k, v in figures.items()}},
        methods=[_method_context(m) for m in methods],
        skipped=(metrics.get("explanations") or {}).get("skipped", {}),
        missing=missing,
        repro=repro,
        config_yaml=config_yaml,
        tree_paths=tree_paths or [],
        text=text,
    )


def write_report(path: str | Path, html: str) -> Path:
    """Write the page atomically."""
    return atomic_write_text(path, html)


def _processes(n: object) -> str:
    """`` × N processes (torchrun)`` for a data-parallel run, else nothing."""
    return f" × {n} processes (torchrun)" if n not in (None, "1") else ""


def _latency_note(latency: dict[str, Any] | None) -> str:
    """``, on N threads at load L`` from metrics.json's ``latency`` block (nothing without it)."""
    if not latency:
        return ""
    load, n = latency.get("load_average"), latency.get("threads")
    threads = f", on {n} thread{'' if n == 1 else 's'}"
    return f"{threads} at load average {load[0]:g}" if load else threads
