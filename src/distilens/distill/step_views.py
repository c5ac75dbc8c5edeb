"""What each objective sees at a training step: the views of one forward pass, and the checks before training.

:func:`step_views` builds one :class:`StepTensors` per objective holding only the tensors
it declared in ``needs`` (teacher outputs read from the cache by row index, tapped student
features); :func:`prepare_objectives` lets objectives size their own parameters (e.g. a
hint adapter) on a two-row example; :func:`check_cache` fails before training when the
cache lacks what an objective needs.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch
from torch import Tensor, nn

from ..models.tap import FeatureTap, default_feature_layer, tapped_output
from ..runtime import autocast
from .objectives import Objective, StepTensors, teacher_cache_options
from .teacher_cache import SoftLabelCache

__all__ = ["check_cache", "student_layer", "feature_tap", "step_views", "prepare_objectives"]


def check_cache(objectives: list[Objective], needs: frozenset[str], cache: SoftLabelCache | None, n: int) -> None:
    """Fail before training when the cache lacks what an objective needs."""
    teacher_needs = {"teacher_logits", "teacher_target", "teacher_features", "teacher_maps"}
    if not needs & teacher_needs:
        return
    if cache is None:
        raise ValueError("an objective needs the teacher's outputs; pass teacher_cache=SoftLabelCache.build(...)")
    if len(cache) != n:
        raise ValueError(f"teacher_cache has {len(cache)} rows, the training split {n}")
    opts = teacher_cache_options(objectives)
    missing = [f"features['{f}']" for f in opts["features"] if not cache.has("features", f)]
    missing += [f"gradcam['{g}']" for g in opts["gradcam"] if not cache.has("gradcam", g)]
    missing += ["input_gradients"] if opts["input_gradients"] and not cache.has("input_gradients") else []
    if missing:
        raise ValueError(
            f"the teacher cache lacks {', '.join(missing)}; build it with "
            f"SoftLabelCache.build(teacher, split, **teacher_cache_options(objectives))"
        )


def student_layer(model: nn.Module, obj: Objective, needs: frozenset[str], example: Tensor) -> str | None:
    """The student layer ``obj`` reads (``auto`` resolved on ``example``), or None when it reads none."""
    if "student_features" not in needs:
        return None
    name = obj.student_layer or "auto"
    return default_feature_layer(model, example) if name == "auto" else name


def feature_tap(model: nn.Module, layers: list[str]) -> ContextManager[Any]:
    """A :class:`FeatureTap` on ``layers`` (hooks removed on exit), or a no-op when there are none."""
    return FeatureTap(model, layers) if layers else contextlib.nullcontext()


def step_views(
    objectives: list[Objective], needs: list[frozenset[str]], layers: list[str | None], logits: Tensor, y: Tensor,
    x: Tensor, idx: Tensor, tap: Any, cache: SoftLabelCache | None, model: nn.Module, epoch: int | None,
    step: int | None,
) -> list[StepTensors]:
    """One StepTensors per objective, holding only the tensors it asked for."""
    union = frozenset().union(*needs)
    shared = StepTensors(
        logits, y,
        teacher_logits=cache[idx] if "teacher_logits" in union and cache is not None else None,
        teacher_target=cache.teacher_target(idx) if "teacher_target" in union and cache is not None else None,
        inputs=x if union & {"inputs", "input_gradients"} else None,
        student=model if "student" in union else None, epoch=epoch, step=step,
    )
    views = []
    for obj, n, layer in zip(objectives, needs, layers):
        view = StepTensors(**{f: getattr(shared, f) for f in shared.__dataclass_fields__})
        if layer is not None:
            view.student_features = tapped_output(tap, model, layer, x)
        if "teacher_features" in n and cache is not None:
            view.teacher_features = cache.features(str(obj.teacher_layer), idx)
        if "teacher_maps" in n and cache is not None:
            kind = obj.teacher_map
            view.teacher_maps = cache.gradcam(str(obj.teacher_layer), idx) if kind == "gradcam" else cache.input_gradients(idx)
        views.append(view)
    return views


def prepare_objectives(
    model: nn.Module, objectives: list[Objective], needs: list[frozenset[str]], layers: list[str | None],
    cache: SoftLabelCache | None, example: Tensor, targets: Tensor, dtype: torch.dtype | None, dev: torch.device,
) -> None:
    """Let objectives size their parameters on a 2-sample example (eval mode, no grad: no state changes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(dev, dtype), feature_tap(model, sorted({n for n in layers if n})) as tap:
            logits = model(example)
        idx = torch.arange(example.shape[0])  # the example is the first rows of the training split
        views = step_views(objectives, needs, layers, logits, targets, example, idx, tap, cache, model, None, None)
        for obj, view in zip(objectives, views):
            obj.prepare(view)
    finally:
        model.train(was_training)
