"""What each objective sees at a training step, resolved once before training.

A :class:`StepPlan` is built from the student, the objectives and the teacher cache: each
objective's student layer (``auto`` resolved on a two-row example), the union of layers the
forward taps, and the checks that the cache and the student can give what the objectives
need. At every step :meth:`StepPlan.forward` runs the student once under autocast with the
taps on and builds one :class:`StepTensors` per objective holding only the tensors it asked
for: teacher outputs read from the cache by row index, tapped student features, the token
mask, a soft tree's leaf paths. No objective runs the student again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ContextManager

import torch
from torch import Tensor, nn

from ..data.bundle import Split
from ..models.capabilities import LeafModel, RegularisedModel, TokenModel
from ..models.modes import eval_mode
from ..models.tap import LEAF_PATHS, FeatureTap, default_feature_layer, tapped_output
from ..runtime import autocast
from .objectives import Objective, StepTensors, requirements, teacher_cache_options, weighted_sum
from .teacher_cache import SoftLabelCache

__all__ = ["StepPlan", "check_cache"]

_TEACHER_NEEDS = frozenset({"teacher_logits", "teacher_target", "teacher_features", "teacher_maps"})


def check_cache(
    objectives: list[Objective], needs: frozenset[str], cache: SoftLabelCache | None, n: int, online: bool = False
) -> None:
    """Fail before training when the cache (or the online teacher) lacks what an objective needs."""
    if not needs & _TEACHER_NEEDS:
        return
    if online:
        if needs & {"teacher_features", "teacher_maps"}:
            raise ValueError("an online teacher gives its logits only; features and explanation maps of augmented views "
                             "are not computed (use logit losses: kd, dkd, ce, leaf_kd)")
        return
    if cache is None:
        raise ValueError("an objective needs the teacher's outputs; pass teacher_cache=SoftLabelCache.build(...)")
    if cache.num_samples != n:
        raise ValueError(f"teacher_cache labels {cache.num_samples} samples, the training split has {n}")
    opts = teacher_cache_options(objectives)
    missing = [f"features['{f}']" for f in opts["features"] if not cache.has("features", f)]
    missing += [f"gradcam['{g}']" for g in opts["gradcam"] if not cache.has("gradcam", g)]
    missing += ["input_gradients"] if opts["input_gradients"] and not cache.has("input_gradients") else []
    if missing:
        raise ValueError(
            f"the teacher cache lacks {', '.join(missing)}; build it with "
            f"SoftLabelCache.build(teacher, split, **teacher_cache_options(objectives))"
        )


def _student_layer(model: nn.Module, obj: Objective, needs: frozenset[str], example: Tensor) -> str | None:
    """The student layer ``obj`` reads (``auto`` resolved on ``example``), or None when it reads none."""
    if "student_features" not in needs:
        return None
    name = obj.student_layer or "auto"
    return default_feature_layer(model, example) if name == "auto" else name


class StepPlan:
    """The student's forward at a training step and the view of it each objective gets.

    Args:
        model: The student, already on ``device``.
        objectives: The loss terms, already on ``device``; their data-sized parameters
            (e.g. a hint adapter) are created here (:meth:`Objective.prepare`).
        cache: Teacher outputs of ``split`` (moved to ``device``), or ``None``.
        split: The training split (its first two rows are the example).
        device: Where the student trains.
        dtype: The autocast dtype, ``None`` for fp32.
        online_teacher: A teacher (moved to ``device``) that labels every batch in the step, in
            eval mode without gradients (``distill.teacher_views: online``), instead of the cache.

    Raises:
        ValueError: the cache lacks what an objective needs, or an objective needs token ids
            and the student reads none.
    """

    def __init__(
        self, model: nn.Module, objectives: list[Objective], cache: SoftLabelCache | None, split: Split,
        device: torch.device, dtype: torch.dtype | None, online_teacher: nn.Module | None = None,
    ) -> None:
        self.model, self.objectives, self.cache, self.device, self.dtype = model, objectives, cache, device, dtype
        self.online_teacher = online_teacher.to(device) if online_teacher is not None else None
        self.needs = [requirements(o) for o in objectives]
        self.union: frozenset[str] = frozenset().union(*self.needs)
        self.uses_teacher = bool(self.union & _TEACHER_NEEDS)
        check_cache(objectives, self.union, cache, len(split), online=online_teacher is not None)
        if cache is not None:
            cache.to(device)
        for obj, needs in zip(objectives, self.needs):
            if "token_mask" in needs and not isinstance(model, TokenModel):
                raise ValueError(
                    f"the '{obj.name}' loss needs a transformer student that reads token ids (pad_id, e.g. "
                    f"tiny_transformer); {type(model).__name__} is not one"
                )
        self.leaves = "leaves" in self.union and isinstance(model, LeafModel)
        self.regularised = isinstance(model, RegularisedModel)
        example = split.inputs[:2].to(device)
        # Each objective's student layer, "auto" resolved once; the forward taps their union.
        self.layers = [_student_layer(model, o, n, example) for o, n in zip(objectives, self.needs)]
        self.tap_layers = sorted({name for name in self.layers if name is not None}) + ([LEAF_PATHS] if self.leaves else [])
        self._prepare(example, split.targets[:2].to(device))

    def forward(self, x: Tensor, y: Tensor, idx: Tensor, epoch: int | None, step: int | None) -> tuple[Tensor, list[StepTensors]]:
        """The student's logits on ``x`` (one forward) and one StepTensors per objective.

        ``idx`` are the cache rows of the batch (its sample indices; with stored views, the
        rows of the epoch's view).
        """
        if "input_gradients" in self.union:
            x.requires_grad_(True)  # objectives differentiate the scores w.r.t. the inputs
        with autocast(self.device, self.dtype), self._tap() as tap:
            logits = self.model(x)
        return logits, self._views(logits, y, x, idx, tap, epoch, step)

    def loss(self, views: list[StepTensors]) -> tuple[Tensor, dict[str, Tensor]]:
        """Σ wᵢ·lossᵢ plus the model's own regularisation (logged as ``regularization``), and the terms."""
        loss, terms = weighted_sum(self.objectives, views)
        if self.regularised:
            reg = self.model.regularization()  # type: ignore[operator]
            loss = loss + reg
            terms["regularization"] = reg.detach()
        return loss, terms

    def _tap(self) -> ContextManager[Any]:
        """A :class:`FeatureTap` on the tapped layers (hooks removed on exit), or a no-op when there are none."""
        return FeatureTap(self.model, self.tap_layers) if self.tap_layers else contextlib.nullcontext()

    def _views(
        self, logits: Tensor, y: Tensor, x: Tensor, idx: Tensor, tap: Any, epoch: int | None, step: int | None
    ) -> list[StepTensors]:
        union, cache, model = self.union, self.cache, self.model
        teacher_logits = teacher_target = None
        if self.online_teacher is not None and self.uses_teacher:
            teacher_logits = self._teach(x)
            teacher_target = teacher_logits.argmax(1)
            cache = None
        elif cache is not None:
            idx = idx.to(self.device, non_blocking=True)  # cache rows are gathered on the device
            teacher_logits = cache[idx] if "teacher_logits" in union else None
            teacher_target = cache.teacher_target(idx) if "teacher_target" in union else None
        shared = StepTensors(
            logits, y,
            teacher_logits=teacher_logits if "teacher_logits" in union else None,
            teacher_target=teacher_target if "teacher_target" in union else None,
            inputs=x if union & {"inputs", "input_gradients"} else None,
            token_mask=x != model.pad_id if "token_mask" in union else None,  # type: ignore[union-attr]
            leaf_log_paths=tapped_output(tap, model, LEAF_PATHS, x) if self.leaves else None,
            leaf_log_probs=model.leaf_log_probs() if self.leaves else None,  # type: ignore[operator]
            epoch=epoch, step=step,
        )
        views = []
        for obj, n, layer in zip(self.objectives, self.needs, self.layers):
            view = dataclasses.replace(shared)
            if layer is not None:
                view.student_features = tapped_output(tap, model, layer, x)
            if "teacher_features" in n and cache is not None:
                view.teacher_features = cache.features(str(obj.teacher_layer), idx)
            if "teacher_maps" in n and cache is not None:
                kind = obj.teacher_map
                view.teacher_maps = cache.gradcam(str(obj.teacher_layer), idx) if kind == "gradcam" else cache.input_gradients(idx)
            views.append(view)
        return views

    def _teach(self, x: Tensor) -> Tensor:
        """The online teacher's fp32 logits of the batch ``x`` (eval mode, no gradients; its mode is restored)."""
        assert self.online_teacher is not None
        with eval_mode(self.online_teacher), torch.no_grad(), autocast(self.device, self.dtype):
            return self.online_teacher(x.detach()).float()

    def _prepare(self, example: Tensor, targets: Tensor) -> None:
        """Let objectives size their parameters on a 2-sample example (eval mode, no grad: no state changes)."""
        with eval_mode(self.model):
            with torch.no_grad(), autocast(self.device, self.dtype), self._tap() as tap:
                logits = self.model(example)
            idx = torch.arange(example.shape[0])  # the example is the first rows of the training split
            for obj, view in zip(self.objectives, self._views(logits, targets, example, idx, tap, None, None)):
                obj.prepare(view)
