"""Build report.html from a run's objects (:class:`~.inputs.ReportInputs`).

A run hands over what its stages produced; ``distilens report RUN`` reads the same objects
back from the run folder (:meth:`ReportInputs.from_folder`), so it needs no training. The page
shows every section whose inputs exist and says which are missing (a run that stopped early
still gets a report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig
from ..data import InputSpec
from ..explain.comparison import Comparison
from ..modalities import modality_of
from ..models.soft_tree import SoftDecisionTree
from .figures import feature_importance_bars, heatmap_grid, row_attributions, spread_by_class
from .html import render_report, write_report
from .evidence_plots import evidence_figures  # evidence (issue 15)
from .inputs import Predictions, ReportInputs
from .verdict import verdict_lines  # evidence (issue 15)
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
from .text import text_context
from .tree import decision_paths, tree_figure

__all__ = ["write_run_report", "write_report_page", "render_run", "verdict"]

#: Verdict thresholds when the run's config is missing (ReportConfig's defaults).
DEFAULT_THRESHOLDS = {"max_accuracy_drop": 0.01, "min_agreement": 0.95, "margin": 0.01}


ROLES = ("teacher", "student", "baseline")
#: Rows of the stratified sample drawn per method (the true classes taken in turn).
GRID_ROWS = 8


def verdict(metrics: dict[str, Any], thresholds: dict[str, float]) -> list[dict[str, str]]:
    """The verdict's lines (:func:`distilens.report.verdict.verdict_lines`) as the report's rows ``{what, value, status}``."""
    return [{"what": line.topic, "value": line.text, "status": line.status} for line in verdict_lines(metrics, thresholds)]


def write_run_report(run_dir: str | Path, *, command: str | None = None) -> Path:
    """Render ``run_dir/report.html`` from the files in ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    return write_report_page(run_dir, ReportInputs.from_folder(run_dir), command=command)


def write_report_page(folder: Path, inputs: ReportInputs, *, command: str | None = None) -> Path:
    """Write ``folder/report.html`` for ``inputs`` (atomically); returns its path."""
    return write_report(Path(folder) / "report.html", render_run(inputs, command=command))


def render_run(inputs: ReportInputs, *, command: str | None = None) -> str:
    """The page for ``inputs`` as a string."""
    spec, preds = inputs.spec, inputs.predictions
    class_names = list(spec.class_names) if spec is not None else []
    figures: dict[str, bytes] = {}
    if inputs.history:
        figures["training"] = loss_curves(inputs.history)
    if preds is not None and class_names:
        targets = preds.targets.numpy()
        logits = {r: preds.logits[r].numpy() for r in ROLES if r in preds.logits}
        figures["confusion"] = confusion_matrices(logits, targets, class_names)
        figures["reliability"] = reliability_diagrams(logits, targets)
        if "teacher" in logits and len(logits) > 1:
            figures["per_class"] = per_class_delta(logits, targets, class_names)
        if preds.train_teacher is not None and preds.train_targets is not None:
            figures["similarity"] = class_similarity(
                preds.train_teacher.numpy(), preds.train_targets.numpy(), class_names, _kd_temperature(inputs.config)
            )
    expl = inputs.explanations
    comparisons = {c.method: c for c in expl.comparisons} if expl is not None else {}
    methods = []
    for block in expl.block.get("methods", []) if expl is not None else []:
        name = block["method"]
        entry: dict[str, Any] = {"block": block, "figures": {}}
        if name in comparisons and spec is not None:
            labels = _true_labels(comparisons[name], expl.block.get("sample_indices"), preds)
            entry["figures"].update(_explanation_figures(comparisons[name], spec, labels))
            if "grid" in entry["figures"]:
                entry["grid_classes"] = sorted({class_names[int(labels[i])] for i in spread_by_class(labels, GRID_ROWS)})
        if block.get("faithfulness"):
            entry["figures"]["faithfulness"] = faithfulness_curves(block["faithfulness"], name)
        methods.append(entry)
    if expl is not None and expl.block.get("sanity"):
        figures["sanity"] = sanity_plot(expl.block["sanity"])
    tree_paths = _soft_tree(inputs.student, spec, next(iter(comparisons.values()), None), figures)
    thresholds = inputs.config.report.model_dump() if inputs.config is not None else DEFAULT_THRESHOLDS
    return render_report(
        inputs.metrics,
        name=inputs.name,
        config_yaml=inputs.config_yaml,
        figures=figures,
        methods=methods,
        checks=verdict(inputs.metrics, thresholds),
        missing=inputs.missing,
        command=command,
        tree_paths=tree_paths,
        text=text_context(expl.payload) if expl is not None and expl.payload is not None else None,
    )


def _soft_tree(student: Any, spec: InputSpec | None, cmp: Comparison | None, figures: dict[str, bytes]) -> list[dict[str, Any]]:
    """For a soft-tree student: the drawn tree (into ``figures``) and decision paths of explained test inputs."""
    if not isinstance(student, SoftDecisionTree) or spec is None:
        return []
    figures["tree"] = tree_figure(student, spec.shape, spec.class_names)
    if cmp is None:
        return []
    return decision_paths(student, cmp.inputs[:6], cmp.targets[:6], spec.class_names)


def _true_labels(cmp: Comparison, rows: list[int] | None, preds: Predictions | None) -> Tensor:
    """The explained inputs' true classes: the test labels at ``rows`` (the explained test rows), else the explained class."""
    if preds is not None and rows and len(rows) == cmp.targets.shape[0] and max(rows) < preds.targets.shape[0]:
        return preds.targets[torch.tensor(rows, dtype=torch.long)]
    return cmp.targets


def _explanation_figures(cmp: Comparison, spec: InputSpec, labels: Tensor) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    names = list(spec.class_names)
    scores = {k: v.numpy() for k, v in cmp.scores.items()}
    if modality_of(spec).align == "pixels":  # maps on the image grid, drawn over the input
        maps = gallery_maps(cmp)
        out["grid"] = heatmap_grid(cmp, names, n=GRID_ROWS, maps=maps, labels=labels)  # the true classes in turn
        galleries = cmp.galleries(6)
        if galleries["same_class_disagree"]:
            out["same_answer"] = heatmap_grid(cmp, names, order=galleries["same_class_disagree"], maps=maps, labels=labels)
        if galleries["different_class"]:
            out["different_answer"] = heatmap_grid(cmp, names, order=galleries["different_class"], maps=maps, labels=labels)
    elif spec.feature_names:
        out["bars"] = feature_importance_bars(cmp, spec.feature_names)
        out["rows"] = row_attributions(cmp, spec.feature_names)
    out["distribution"] = agreement_distribution(scores, cmp.method)
    out.update(evidence_figures(cmp, names, pixels=modality_of(spec).align == "pixels" and cmp.teacher_maps.dim() >= 3))  # evidence
    return out


def gallery_maps(cmp: Comparison) -> dict[str, Any]:
    """Role → maps the galleries draw: teacher, student and, where it was explained, the label-only baseline."""
    maps = {"teacher": cmp.teacher_maps, "student": cmp.student_maps}
    if "baseline" in cmp.others:  # the label-only control, explained against the same teacher maps
        maps["baseline"] = cmp.others["baseline"].maps
    return maps


def _kd_temperature(cfg: RunConfig | None) -> float:
    """The temperature of the run's kd/dkd term (1 without one): the class-similarity figure's."""
    for loss in cfg.distill.losses if cfg is not None else []:
        temperature = loss.options().get("temperature")
        if loss.name in ("kd", "dkd") and temperature:
            return float(temperature)
    return 1.0
