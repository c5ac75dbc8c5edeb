"""Before training: one line per model with its size and an estimate of the time per epoch.

The estimate times a few training steps (forward, loss, backward) of a copy of the model on
the run's first batches, so the run's own models, random state and batch-norm statistics are
untouched; it is said to be an estimate, and it is skipped under ``--quiet``.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Split, iterate_batches
from ..evaluate import size_bytes
from .context import RunContext
from .data import DataResult
from .models import ModelPlan

__all__ = ["estimate_epoch_seconds", "print_model_plan"]


def estimate_epoch_seconds(model: nn.Module, split: Split, batch_size: int, device: torch.device, batches: int = 2) -> float:
    """Seconds one training epoch of ``model`` on ``split`` should take, from ``batches`` timed steps.

    One untimed step first (allocation, kernel choice); then the mean step time times the
    epoch's number of batches. The model is copied: the original is not changed.
    """
    clone = copy.deepcopy(model).to(device).train()
    steps = math.ceil(len(split) / batch_size)
    times: list[float] = []
    for k, (x, y, _) in enumerate(iterate_batches(split, batch_size)):
        if k > batches:
            break
        x, y = x.to(device), y.to(device)
        start = time.perf_counter()
        loss = F.cross_entropy(clone(x), y)
        if loss.requires_grad:
            loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k > 0:
            times.append(time.perf_counter() - start)
    per_step = sum(times) / len(times) if times else 0.0
    return per_step * steps


def print_model_plan(ctx: RunContext, data: DataResult, plan: ModelPlan) -> None:
    """``teacher: cnn, 260,682 parameters (1.0 MB), ~12.0 s per epoch × 10 epochs (estimate)`` per model trained.

    The estimate times 2 training steps of a copy of each model on the first batches.
    """
    if ctx.console.quiet or not ctx.world.main:
        return
    cfg = ctx.config
    rows = [("teacher", cfg.teacher.arch, plan.teacher, data.bundle.for_teacher().train, cfg.teacher.train.batch_size,
             0 if cfg.teacher.weights else cfg.teacher.train.epochs)]
    students = ["student"] + (["baseline"] if cfg.distill.baseline else [])
    rows += [(role, cfg.student.arch, plan.student, data.bundle.train, cfg.distill.batch_size, cfg.distill.epochs)
             for role in students]
    estimates: dict[tuple[int, int, int], float] = {}  # the baseline is timed as the student is
    for role, arch, model, split, batch_size, epochs in rows:
        params = sum(p.numel() for p in model.parameters())
        size = f"{role}: {arch}, {params:,} parameters ({_megabytes(size_bytes(model))})"
        if not epochs:
            ctx.console.print(f"{size}, loaded from {cfg.teacher.weights}")
            continue
        key = (id(model), id(split), batch_size)
        if key not in estimates:
            estimates[key] = estimate_epoch_seconds(model, split, batch_size, ctx.device)
        seconds = estimates[key]
        ctx.console.print(f"{size}, ~{_duration(seconds)} per epoch × {epochs} epochs (estimate)")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
