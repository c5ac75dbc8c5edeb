"""The run: a :class:`RunContext` and a short sequence of typed stages (ARCHITECTURE.md, "One run").

``run`` is the whole job; the stages are reused by the commands on a finished run folder
(``distilens explain|export|predict|report RUN``, :mod:`distilens.commands`).
"""

from .context import RunContext, Timings
from .data import DataResult, data_stage, load_run_data, saved_data_stage
from .evaluate import EvaluateResult, evaluate_stage
from .explain import ExplainResult, explain_stage
from .models import ModelPlan, plan_models
from .report import ReportResult, StageResult, assemble_metrics, report_stage
from .run import RunResult, run
from .training import CacheResult, ModelFiles, StudentsResult, TeacherResult, cache_stage, students_stage, teacher_stage

__all__ = [
    "run",
    "RunResult",
    "RunContext",
    "Timings",
    "StageResult",
    "DataResult",
    "ModelPlan",
    "TeacherResult",
    "CacheResult",
    "StudentsResult",
    "EvaluateResult",
    "ExplainResult",
    "ReportResult",
    "ModelFiles",
    "data_stage",
    "saved_data_stage",
    "load_run_data",
    "plan_models",
    "teacher_stage",
    "cache_stage",
    "students_stage",
    "evaluate_stage",
    "explain_stage",
    "report_stage",
    "assemble_metrics",
]
