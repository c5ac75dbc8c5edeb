"""Build report.html from what a run folder holds, so `distilens report RUN` needs no training.

The page shows every section whose inputs exist and says which are missing (a run that
stopped early still gets a report).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from ..explain.comparison import Comparison
from ..explain.text_payload import TEXT_PAYLOAD
from ..models.io import load_model
from .figures import feature_importance_bars, heatmap_grid, row_attributions
from .html import render_report, write_report
from .evidence_plots import evidence_figures  # evidence (issue 15)
from .verdict import verdict_lines  # evidence (issue 15)
from .text import text_context
from .tree import decision_paths, tree_figure
from .plots import (
    agreement_distribution,
    class_similarity,
    confusion_matrices,
    faithfulness_curves,
    loss_curves,
    per_class_delta,
    reliability_diagrams,
    sanity_plot,
)

__all__ = ["write_run_report", "verdict"]

ROLES = ("teacher", "student", "baseline")


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv rows with numbers parsed back (ints stay ints)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: (v if k == "model" else _number(v)) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def verdict(metrics: dict[str, Any], thresholds: dict[str, float]) -> list[dict[str, str]]:
    """The verdict's lines (:func:`distilens.report.verdict.verdict_lines`) as the report's rows ``{what, value, status}``."""
    return [{"what": line.topic, "value": line.text, "status": line.status} for line in verdict_lines(metrics, thresholds)]


def write_run_report(run_dir: str | Path, *, command: str | None = None) -> Path:
    """Render ``run_dir/report.html`` from the files in ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    missing: list[str] = []
    cfg = _read_yaml(run_dir / "config.yaml", missing)
    metrics = _read_json(run_dir / "metrics.json", missing)
    spec = (_read_json(run_dir / "teacher.json", missing) or {}).get("input_spec", {})
    class_names = [str(c) for c in spec.get("class_names", [])]
    history = read_history(run_dir / "history.csv")
    if not history:
        missing.append("history.csv (training curves)")
    figures: dict[str, bytes] = {}
    if history:
        figures["training"] = loss_curves(history)

    preds = _read_tensors(run_dir / "predictions.safetensors", missing)
    if preds and class_names:
        targets = preds["test/targets"].numpy()
        logits = {r: preds[f"test/{r}"].numpy() for r in ROLES if f"test/{r}" in preds}
        figures["confusion"] = confusion_matrices(logits, targets, class_names)
        figures["reliability"] = reliability_diagrams(logits, targets)
        if "teacher" in logits and len(logits) > 1:
            figures["per_class"] = per_class_delta(logits, targets, class_names)
        if "train/teacher" in preds:
            temperature = _kd_temperature(cfg)
            figures["similarity"] = class_similarity(
                preds["train/teacher"].numpy(), preds["train/targets"].numpy(), class_names, temperature
            )

    methods = []
    expl = (metrics or {}).get("explanations")
    # Maps only where images were explained: text runs keep theirs in explanations/text.json,
    # and a run whose explainers were all skipped has none.
    word_level = (expl or {}).get("level") == "word"
    has_maps = bool(expl and expl.get("methods")) and not word_level
    tensors = _read_tensors(run_dir / "explanations.safetensors", missing if has_maps else [])
    for block in (expl or {}).get("methods", []):
        name = block["method"]
        entry: dict[str, Any] = {"block": block, "figures": {}}
        if tensors and f"{name}/inputs" in tensors and class_names:
            cmp = Comparison.from_tensors(name, tensors)
            entry["figures"].update(_explanation_figures(cmp, block, spec, class_names))
        if block.get("faithfulness"):
            entry["figures"]["faithfulness"] = faithfulness_curves(block["faithfulness"], name)
        methods.append(entry)
    if expl and expl.get("sanity"):
        figures["sanity"] = sanity_plot(expl["sanity"])
    tree_paths = _soft_tree(run_dir, spec, class_names, preds, figures)

    thresholds = (cfg or {}).get("report") or {"max_accuracy_drop": 0.01, "min_agreement": 0.95, "margin": 0.01}
    html = render_report(
        metrics or {},
        name=str((cfg or {}).get("name", run_dir.name)),
        config_yaml=(run_dir / "config.yaml").read_text(encoding="utf-8") if cfg is not None else "",
        figures=figures,
        methods=methods,
        checks=verdict(metrics or {}, thresholds),
        missing=missing,
        command=command,
        tree_paths=tree_paths,
        text=_text_section(run_dir, missing if word_level else []),
    )
    return write_report(run_dir / "report.html", html)


def _soft_tree(run_dir: Path, spec: dict[str, Any], names: list[str], preds: dict[str, Any] | None,
               figures: dict[str, bytes]) -> list[dict[str, Any]]:
    """For a soft-tree student: the drawn tree (into ``figures``) and decision paths of test inputs."""
    meta = _read_json(run_dir / "student.json", [])
    if not meta or meta.get("arch") != "soft_tree" or not names:
        return []
    tree = load_model(run_dir / "student.safetensors")[0]
    figures["tree"] = tree_figure(tree, spec["shape"], names)
    tensors = _read_tensors(run_dir / "explanations.safetensors", [])
    key = next((k for k in (tensors or {}) if k.endswith("/inputs")), None)
    if key is None:
        return []
    inputs = tensors[key][:6]
    targets = tensors[key.replace("/inputs", "/targets")][:6]
    return decision_paths(tree, inputs, targets, names)


def _explanation_figures(cmp: Comparison, block: dict[str, Any], spec: dict[str, Any], names: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    scores = {k: v.numpy() for k, v in cmp.scores.items()}
    if spec.get("kind") == "image" and cmp.teacher_maps.dim() >= 3:
        out["grid"] = heatmap_grid(cmp, names, n=8, title=f"{cmp.method}: a stratified sample of test inputs")
        galleries = cmp.galleries(6)
        if galleries["same_class_disagree"]:
            out["same_answer"] = heatmap_grid(cmp, names, order=galleries["same_class_disagree"],
                                              title=f"{cmp.method}: same answer, different reasons (lowest ρ first)")
        if galleries["different_class"]:
            out["different_answer"] = heatmap_grid(cmp, names, order=galleries["different_class"],
                                                   title=f"{cmp.method}: different answers")
    elif spec.get("feature_names"):
        out["grid"] = feature_importance_bars(cmp, spec["feature_names"])
        out["rows"] = row_attributions(cmp, spec["feature_names"])
    out["distribution"] = agreement_distribution(scores, cmp.method)
    out.update(evidence_figures(cmp, names, pixels=spec.get("kind") == "image" and cmp.teacher_maps.dim() >= 3))  # evidence
    return out


def _text_section(run_dir: Path, missing: list[str]) -> dict[str, Any] | None:
    """The word-level text section from explanations/text.json, when the run explained text."""
    payload = _read_json(run_dir / TEXT_PAYLOAD, [])
    if payload is None:
        missing.append(str(TEXT_PAYLOAD))
        return None
    return text_context(payload)


def _kd_temperature(cfg: dict[str, Any] | None) -> float:
    for loss in ((cfg or {}).get("distill") or {}).get("losses") or []:
        if loss.get("name") in ("kd", "dkd") and loss.get("temperature"):
            return float(loss["temperature"])
    return 1.0


def _read_yaml(path: Path, missing: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        missing.append(path.name)
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _read_json(path: Path, missing: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        missing.append(path.name)
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _read_tensors(path: Path, missing: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        missing.append(path.name)
        return None
    return load_file(str(path))

