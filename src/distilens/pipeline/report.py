"""The report stage: metrics.json assembled from the stage results, and report.html drawn from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..io import atomic_write_json
from ..report.build import write_report_page
from ..report.inputs import HISTORY, ReportInputs
from .context import RunContext
from .data import DataResult
from .evaluate import EvaluateResult
from .explain import ExplainResult
from .training import StudentsResult, TeacherResult

__all__ = ["StageResult", "ReportResult", "assemble_metrics", "report_stage"]


class StageResult(Protocol):
    """What every stage returns: its part of metrics.json."""

    def to_json(self) -> dict[str, Any]:
        """Top-level metrics.json keys this stage fills (none for the training stages)."""
        ...


@dataclass
class ReportResult:
    """Where report.html was written."""

    path: Path

    def to_json(self) -> dict[str, Any]:
        return {}


def assemble_metrics(
    ctx: RunContext, data: DataResult, teacher: TeacherResult, students: StudentsResult, evaluation: EvaluateResult,
    explanation: ExplainResult,
) -> dict[str, Any]:
    """metrics.json (README, "metrics.json"): dataset, models, compression, the reference model (how the
    teacher's head was fitted, how the students were initialised), seed, explanations, environment and
    the stage times so far."""
    return {
        **data.to_json(), **evaluation.to_json(), **teacher.to_json(), **students.to_json(), "seed": ctx.config.seed,
        **explanation.to_json(),
        "environment": ctx.environment(), "timing_s": ctx.timings.to_json(),
    }


def report_stage(
    ctx: RunContext, metrics: dict[str, Any], data: DataResult, evaluation: EvaluateResult,
    explanation: ExplainResult, history: list[dict[str, Any]], student: Any,
) -> ReportResult:
    """Write metrics.json and draw report.html from the run's objects (nothing is read back)."""
    atomic_write_json(ctx.staging / "metrics.json", metrics)
    inputs = ReportInputs(
        name=ctx.config.name, config=ctx.config, config_yaml=ctx.config_yaml, metrics=metrics, history=history,
        spec=data.bundle.for_teacher().spec, predictions=evaluation.predictions,
        explanations=explanation.explanations, student=student,
        missing=[] if history else [f"{HISTORY} (training curves)"],
    )
    return ReportResult(write_report_page(ctx.staging, inputs, command=ctx.command))
