"""Explain a teacher and a student on the same samples, for the same class, and compare."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..progress import ProgressArg, reporter
from .align import Aligner, default_aligner
from .attribute import attribute, predicted_class
from .comparison import Comparison, ModelMaps
from .hygiene import model_device
from .inputs import ModelInputs

__all__ = ["compare"]


def compare(
    teacher: nn.Module,
    student: nn.Module,
    inputs: Tensor | ModelInputs,
    *,
    method: str = "integrated_gradients",
    student_inputs: Tensor | ModelInputs | None = None,
    align: Aligner | None = None,
    target: Tensor | None = None,
    topk: float | None = None,
    others: Mapping[str, tuple[nn.Module, Tensor | ModelInputs]] | None = None,
    teacher_maps: Tensor | None = None,
    teacher_pred: Tensor | None = None,
    progress: ProgressArg = None,
    **options: Any,
) -> Comparison:
    """Explain ``teacher`` and ``student`` on the same samples for the same target and score agreement.

    Further models (``others``: the label-only baseline, a second teacher, the untrained
    student) are explained for the same target and scored against the same teacher maps,
    which are computed once.

    Args:
        teacher: The reference model.
        student: The model under review.
        inputs: (N, *shape) the teacher's inputs: images, rows, or token ids (optionally as
            :class:`~.inputs.ModelInputs`, which adds the special tokens to keep).
        method: Explainer name (``distilens list explainers``).
        student_inputs: The student's inputs for the same samples, when it reads them
            differently (its own tokenizer); default ``inputs``.
        align: How the two maps meet (:mod:`.align`); default pixels for images and
            features for tables. Text needs a :class:`~.align.WordAligner`.
        target: (N,) classes to explain; default the teacher's predicted classes.
        topk: Fraction of the units in the top-k overlap; default the aligner's (0.1 of
            pixels or features, 0.2 of a text's words).
        others: Role → ``(model, its inputs)`` of further models; each reads its inputs as
            the student or the teacher does (text: the token ids of its own tokenizer).
        teacher_maps: The teacher's maps for ``target``, computed before (read back by
            :class:`~.teacher_memo.TeacherMemo`); needs ``target``.
        teacher_pred: (N,) the teacher's predicted classes on ``inputs``, when the caller has
            them (one forward pass saved per call).
        progress: The models explained so far on a bar (``None``: when stderr is a terminal),
            or a ``(label, done, total)`` callback (:mod:`distilens.progress`).
        **options: Passed to the explainer for both models.

    Example:
        >>> cmp = compare(teacher, student, bundle.test.inputs[:64], method="gradcam")
        >>> cmp.summary()["agreement"]["spearman"], cmp.galleries()["same_class_disagree"]
        >>> cmp = compare(t, s, t_enc.ids, student_inputs=s_enc.ids, align=WordAligner(texts, t_enc.offsets, s_enc.offsets))
        >>> cmp = compare(teacher, student, x, method="gradcam", others={"baseline": (baseline, x)})
        >>> cmp.others["baseline"].scores["spearman"]   # (N,) the baseline's agreement with the teacher
    """
    if teacher_maps is not None and target is None:
        raise ValueError("compare: teacher_maps were computed for some target; pass that target too")
    t_view = inputs if isinstance(inputs, ModelInputs) else ModelInputs(inputs)
    s_view = t_view if student_inputs is None else student_inputs
    s_view = s_view if isinstance(s_view, ModelInputs) else ModelInputs(s_view)
    align = align if align is not None else default_aligner(t_view.inputs)
    t_x = t_view.inputs
    t_pred = predicted_class(teacher, t_x.to(model_device(teacher))).cpu() if teacher_pred is None else teacher_pred.cpu()
    target = t_pred if target is None else torch.as_tensor(target).cpu()
    k = align.topk if topk is None else topk

    def explain(model: nn.Module, view: ModelInputs) -> ModelMaps:
        pred = predicted_class(model, view.inputs.to(model_device(model))).cpu()
        maps = attribute(model, view.inputs, target, method, **view.options(method), **options)
        aligned = align.align(t_maps, maps)
        return ModelMaps(pred, maps, aligned.scores(k), aligned)

    roles = ["teacher", "student", *(others or {})]
    with reporter(progress, f"compare ({method})") as report:

        def explaining(i: int) -> None:  # i models explained so far
            if report is not None:
                report(roles[i] if i < len(roles) else "done", i, len(roles))

        explaining(0)
        if teacher_maps is None:
            t_maps = attribute(teacher, t_x, target, method, **t_view.options(method), **options)
        else:
            t_maps = teacher_maps
        explaining(1)
        s = explain(student, s_view)
        rest: dict[str, ModelMaps] = {}
        for i, (role, (model, x)) in enumerate((others or {}).items(), start=2):
            explaining(i)
            rest[role] = explain(model, x if isinstance(x, ModelInputs) else ModelInputs(x))
        explaining(len(roles))
    return Comparison(
        method=method,
        inputs=t_x,
        targets=target,
        teacher_pred=t_pred,
        student_pred=s.pred,
        teacher_maps=t_maps,
        student_maps=s.maps,
        scores=s.scores,
        aligned=s.aligned,
        level=align.level,
        others=rest,
    )
