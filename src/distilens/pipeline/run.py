"""One run, stage by stage: data → teacher → soft labels → students → evaluate → explain → report.

Each stage takes the :class:`RunContext` and the typed results of the stages before it, and
returns its own result (a dataclass whose ``to_json()`` is its part of metrics.json).

Example:
    >>> from distilens.config import load_config
    >>> result = run(load_config(None, ["distill.epochs=5"]), out="runs/quick")
    >>> result.metrics["student"]["accuracy"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import distributed
from ..config import RunConfig
from ..io import atomic_write_json, atomic_write_text
from ..report.inputs import HISTORY, write_history
from ..runfolder import held_run_folders
from ..runtime import resolve_device
from .context import RunContext
from .data import DataResult, data_stage
from .evaluate import evaluate_stage
from .estimate import print_model_plan
from .evidence import evidence_metrics, evidence_stage
from .explain import explain_stage
from .models import plan_models
from .report import assemble_metrics, report_stage
from .training import cache_stage, students_stage, teacher_stage

__all__ = ["run", "RunResult"]


@dataclass
class RunResult:
    """The finished run: its folder and its metrics (the content of metrics.json)."""

    path: Path
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def run(
    cfg: RunConfig,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    console: Console | None = None,
    command: str | None = None,
) -> RunResult:
    """Run the whole job of ``cfg`` into ``out`` (default ``runs/<cfg.name>``).

    Everything the user could get wrong is checked before the first file is written. The
    run is written into a staging folder and moved into place at the end, so an existing
    run folder is untouched if this run fails.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the teacher and students are trained
    data-parallel (see :mod:`distilens.distributed`); rank 0 alone writes the run folder,
    builds the soft-label cache (the others read its file) and runs the evaluate, explain
    and report stages. The other ranks return after training, with empty ``metrics``.

    Raises:
        DistilensError: bad config, data, model or run folder (nothing is left behind).
        Interrupted: Ctrl-C; training stopped after an epoch's checkpoint, and the staging
            folder is kept for ``resume=True``.
    """
    device = resolve_device(cfg.runtime.device)
    # No collective runs before the staging folder is opened, so a bad input found by the
    # checks below fails every process alike, with no process left waiting for another.
    with distributed.session(device) as (_, device), held_run_folders():  # the run folder's lock, released however it ends
        ctx = RunContext.prepare(cfg, device, out=out, overwrite=overwrite, resume=resume, console=console, command=command)
        return _stages(ctx)


def _stages(ctx: RunContext) -> RunResult:
    """The stages in order; the data, models and explainers are checked before the staging folder opens."""
    cfg, timings = ctx.config, ctx.timings
    with timings.timed("data"):
        data = data_stage(cfg)
    plan = plan_models(cfg, data)
    with ctx.staged() as staging:
        if ctx.world.main:
            atomic_write_text(staging / "config.yaml", ctx.config_yaml)
            data.modality.save_preprocessing(data.bundle, staging)  # applied again by predict
        _print_data(ctx, data)
        print_model_plan(ctx, data, plan)  # one line per model: its size and the estimated time per epoch
        with ctx.training():
            with timings.timed("teacher"):
                teacher = teacher_stage(ctx, data, plan)
            with timings.timed("cache"):
                soft = cache_stage(ctx, data, teacher.model, plan.objectives)
            students = students_stage(ctx, data, plan, teacher.model, soft.cache)  # times "distill" and "baseline"
            evidence = evidence_stage(ctx, data, teacher.model, students, soft.cache)  # the controls and references
        if not ctx.world.main:  # rank 0 alone evaluates, explains and writes the outputs
            return RunResult(ctx.folder.final, {}, timings.seconds)
        history = teacher.history + students.history + evidence.history
        write_history(staging / HISTORY, history)
        with timings.timed("evaluate"), ctx.stage("evaluating on the test split (latency: models in turn)"):
            evaluation = evaluate_stage(ctx, data, teacher.model, {**students.models(), **evidence.students()}, soft.cache)
            paired = evidence_metrics(ctx, data, evaluation)
        with timings.timed("explain"), ctx.stage(f"explaining with {', '.join(plan.methods) or 'no method'}"):
            explanation = explain_stage(ctx, plan.explain_inputs, teacher.model, students.student, plan.methods, plan.skipped,
                                        evidence.models)
        with timings.timed("report"), ctx.stage("writing report.html"):  # the page shows the stage times so far; metrics.json gets the final ones
            report_stage(ctx, {**assemble_metrics(ctx, data, teacher, students, evaluation, explanation), **paired}, data,
                         evaluation, explanation, history, students.student)
        timings.finish()
        metrics = {**assemble_metrics(ctx, data, teacher, students, evaluation, explanation), **paired}
        atomic_write_json(staging / "metrics.json", metrics)
    return RunResult(ctx.folder.commit(), metrics, timings.seconds)


def _print_data(ctx: RunContext, data: DataResult) -> None:
    """How the data is held, and the transfer set; printed once every input is checked."""
    lazily = f"read lazily from the files by {data.bundle.loading().get('num_workers')} worker process(es)"
    ctx.console.print(f"data: {lazily if data.bundle.train.lazy else 'held in memory'}")
    split = data.bundle.describe_split()
    if split is not None:
        ctx.console.print(f"splits: {split}")
    if data.transfer is not data.bundle:
        ctx.console.print(f"transfer set: {len(data.bundle.train)} training texts + {data.copies} copies labelled by the teacher")
