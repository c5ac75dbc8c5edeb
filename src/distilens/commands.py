"""Commands on a finished run folder: explain again, rebuild the report, export, predict.

Each reads what ``distilens run`` wrote (config.yaml, the models, the saved preprocessing,
metrics.json), reuses the run's own stages (:mod:`distilens.pipeline`) and needs no training.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .config import ExplainConfig, load_config
from .data import InputSpec
from .errors import DataError
from .explain import choose_methods
from .export import export_model
from .io import atomic_write_json, spreadsheet_safe
from .modalities import modality_of
from .explain.evidence import ROLES as EVIDENCE_ROLES
from .models.io import load_run_model
from .pipeline import RunContext, explain_stage, saved_data_stage
from .pipeline.models import explicit_methods
from .predict import predict, probability_cell, words_cell, write_predictions
from .report.build import write_report_page, write_run_report
from .report.inputs import ReportInputs
from .runfolder import check_run_folder

__all__ = ["explain_run", "report_run", "export_run", "predict_run"]


def _run_dir(path: str | Path) -> Path:
    return check_run_folder(path)  # config.yaml, metrics.json and model .json files read through the bounded readers


def report_run(path: str | Path, *, command: str | None = None) -> Path:
    """Rebuild ``report.html`` of a run folder from its files (read once each), without training."""
    return write_run_report(_run_dir(path), command=command)


def explain_run(
    path: str | Path, *, methods: list[str] | None = None, n_samples: int | None = None, command: str | None = None,
    allow_import: bool = False, trust_torchscript: bool = False,
) -> dict[str, Any]:
    """Explain a finished run's teacher and student again (more methods or more samples).

    ``methods`` are ADDED to the methods the run already explained with (those are explained
    again, on the same samples, so that every method's numbers stay comparable). The data is the run's, made by its saved preprocessing. Updates explanations.safetensors
    (text: explanations/text.json), the ``explanations`` block of metrics.json and the report.
    A teacher stored as an import path or TorchScript needs ``allow_import`` /
    ``trust_torchscript`` (:func:`~distilens.models.io.load_run_model`).
    """
    run_dir = _run_dir(path)
    cfg = load_config(run_dir / "config.yaml")
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    overrides: dict[str, Any] = {}
    if methods:  # added to the methods the run already has: nothing already explained is dropped
        had = [b["method"] for b in (metrics.get("explanations") or {}).get("methods", [])]
        overrides["methods"] = had + [m for m in methods if m not in had]
    if n_samples:
        overrides["n_samples"] = n_samples
    if overrides:
        cfg = cfg.model_copy(update={"explain": ExplainConfig(**{**cfg.explain.model_dump(exclude_unset=True), **overrides})})
    trust = {"allow_import": allow_import, "trust_torchscript": trust_torchscript}
    teacher, _ = load_run_model(run_dir, "teacher", **trust)  # before the data: a refused model costs nothing
    student, _ = load_run_model(run_dir, "student", **trust)
    # evidence (issue 15): the controls and references the run saved are explained again with the student
    others = {role: load_run_model(run_dir, role, **trust)[0] for role in EVIDENCE_ROLES if (run_dir / f"{role}.safetensors").is_file()}
    data = saved_data_stage(cfg, run_dir)
    inputs = data.modality.explain_inputs(data.bundle)
    chosen, skipped = choose_methods(cfg.explain.methods, teacher, student, inputs, explicit=explicit_methods(cfg))
    result = explain_stage(RunContext.of_finished_run(run_dir, cfg, command=command), inputs, teacher, student, chosen, skipped,
                           others, reuse_teacher=False)  # the folder may come from elsewhere: explained afresh
    block = result.to_json().get("explanations", {"methods": []})
    metrics["explanations"] = block
    atomic_write_json(metrics_path, metrics)
    write_report_page(run_dir, ReportInputs.from_folder(run_dir, explanations=result.explanations), command=command)
    return block


def export_run(
    path: str | Path, *, format: str, quantize: str | None = None, out: str | Path | None = None,
    allow_import: bool = False, trust_torchscript: bool = False,
) -> dict[str, Any]:
    """Export a run's student (ONNX or TorchScript, optionally int8) and check it on the test split.

    The test split is the run's, made by its saved preprocessing.
    """
    run_dir = _run_dir(path)
    student, _ = load_run_model(run_dir, "student", allow_import=allow_import, trust_torchscript=trust_torchscript)
    data = saved_data_stage(load_config(run_dir / "config.yaml"), run_dir)
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[format]
    target = Path(out) if out else run_dir / f"student{'-int8' if quantize else ''}{suffix}"
    report = export_model(
        student, data.bundle.spec, target, format, quantize,  # type: ignore[arg-type]
        # [:] decodes a lazily read test split (a no-op view for a tensor): the check needs every input.
        check_inputs=data.bundle.test.inputs[:], check_targets=data.bundle.test.targets,
    )
    return {"path": str(target), **report}


def predict_run(
    path: str | Path, inputs: str | Path, *, out: str | Path | None = None, explain: bool = False,
    allow_import: bool = False, trust_torchscript: bool = False,
) -> str | None:
    """Predict ``inputs`` with a run's student; CSV text (or ``None`` when written to ``out``).

    Inputs go through the run's saved preprocessing. With ``explain``, image inputs also get
    a heatmap PNG each, next to ``out`` (or in ``RUN/heatmaps/``); table rows get one
    attribution column per feature; texts a ``words`` column: JSON ``[[word, score], ...]``
    (token scores summed per word).
    """
    run_dir = _run_dir(path)
    student, meta = load_run_model(run_dir, "student", allow_import=allow_import, trust_torchscript=trust_torchscript)
    spec = InputSpec.from_dict(meta["input_spec"])
    if not Path(inputs).exists():
        raise DataError(f"input '{inputs}' does not exist; give an image, a folder of images or a CSV file")
    modality = modality_of(spec)
    preprocessing = modality.load_preprocessing(run_dir, load_config(run_dir / "config.yaml"), spec)
    rows = predict(student, spec, preprocessing, inputs, explain=explain)
    if explain:  # images: a heatmap PNG per input
        modality.write_attributions(rows, (Path(out).parent if out else run_dir) / "heatmaps")
    if out:
        write_predictions(rows, out)
        return None
    tmp = io.StringIO()
    writer = csv.writer(tmp, lineterminator="\n")
    for r in rows:
        if isinstance(r.get("attribution"), list):  # text: the words and their scores
            r["words"] = words_cell(r.pop("attribution"))
    keys = [k for k in ("source", "class", "probability", "heatmap", "words") if any(k in r for r in rows)]
    writer.writerow(keys)
    for r in rows:
        writer.writerow([spreadsheet_safe(r.get(k, "")) if k in ("source", "class") else
                         probability_cell(r[k]) if k == "probability" else r.get(k, "") for k in keys])
    return tmp.getvalue()
