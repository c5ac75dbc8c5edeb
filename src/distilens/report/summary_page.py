"""summary.html of a set of seeds: the verdict over seeds, per metric mean ± sd, the paired differences, each seed's report.

Self-contained like report.html (Jinja2 with autoescape, CSS and the PNG inlined); the only
links are relative ones to each seed's own report.

Example:
    >>> write_summary_page(Path("runs/digits-5"), summary, thresholds=cfg.report.model_dump())
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Mapping

import jinja2

from ..io import atomic_write_text
from .evidence_plots import seed_differences
from .evidence_view import ROLE_NAMES, evidence_context
from .verdict import summary_verdict_lines

__all__ = ["render_summary", "write_summary_page"]

_METRICS = (("accuracy", "accuracy", 100.0, "{:.1f}%"), ("agreement", "top-1 agreement with teacher", 100.0, "{:.1f}%"),
            ("predictive_kl", "KL(teacher ‖ model), nats", 1.0, "{:.3f}"), ("ece", "ECE", 1.0, "{:.3f}"))


def _cell(stat: Mapping[str, Any] | None, scale: float, fmt: str) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    text = fmt.format(scale * stat["mean"])
    return text + (f" ± {fmt.format(scale * stat['sd']).rstrip('%')}" if stat.get("sd") is not None else "")


def render_summary(summary: Mapping[str, Any], *, thresholds: Mapping[str, float] | None = None) -> str:
    """The page as a string (see the module doc)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    models = summary.get("models") or {}
    rows = [
        {"model": ROLE_NAMES.get(role, role) if role != "teacher" else "teacher",
         "cells": [_cell(models[role].get(key), scale, fmt) for key, _, scale, fmt in _METRICS]}
        for role in models
    ]
    paired = []
    for key, entries in (summary.get("paired") or {}).items():
        for metric, label, scale, _ in _METRICS:
            pd = (entries or {}).get(metric)
            if pd and pd.get("mean") is not None:
                lo, hi = pd.get("t_ci_low"), pd.get("t_ci_high")
                paired.append({
                    "versus": ROLE_NAMES.get(key.removeprefix("student_minus_"), key), "metric": label,
                    "mean": f"{scale * pd['mean']:+.3g}", "t_ci": "–" if lo is None else f"[{scale * lo:+.3g}, {scale * hi:+.3g}]",
                    "boot": "–" if pd.get("ci_low") is None else f"[{scale * pd['ci_low']:+.3g}, {scale * pd['ci_high']:+.3g}]",
                    "p": "–" if pd.get("p_value") is None else f"{pd['p_value']:.2g}",
                    "wtl": f"{pd.get('wins')}/{pd.get('ties')}/{pd.get('losses')}",
                })
    figure = seed_differences(summary)
    timing = summary.get("timing_s") or {}
    return env.get_template("summary.html.j2").render(
        summary=summary,
        verdict=summary_verdict_lines(summary, thresholds),
        columns=[label for _, label, _, _ in _METRICS],
        rows=rows,
        simple={k: _cell(v.get("accuracy"), 100.0, "{:.1f}%") + (f" ({v['model']})" if v.get("model") else "")
                for k, v in (summary.get("simple_models") or {}).items()},
        paired=paired,
        methods=[{"method": m, "n": b.get("n_samples"), "ev": evidence_context(b)} for m, b in (summary.get("explanations") or {}).items()],
        figure=base64.b64encode(figure).decode("ascii") if figure else None,
        seeds=[{"seed": s, "folder": (summary.get("runs") or {}).get(str(s), f"seed-{s}"), "seconds": timing.get(str(s))}
               for s in summary.get("seeds") or []],
        timing=timing,
    )


def write_summary_page(folder: str | Path, summary: Mapping[str, Any], *, thresholds: Mapping[str, float] | None = None) -> Path:
    """Write ``folder/summary.html`` atomically; returns its path."""
    return atomic_write_text(Path(folder) / "summary.html", render_summary(summary, thresholds=thresholds))
