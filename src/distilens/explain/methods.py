"""Which explain methods a run uses: checked against the models and inputs before any training.

:func:`choose_methods` turns ``explain.methods`` into the methods a run explains with (an
inapplicable default is skipped with its reason, an inapplicable named one is a config
error); :func:`split_methods` does the same for :func:`~.stage.explain_models`' callers.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import ConfigError, DistilensError
from .explainers import explainers_for, get_explainer
from .inputs import ExplainInputs

__all__ = ["FALLBACK_METHOD", "inapplicable_reason", "choose_methods", "split_methods"]

#: Run when none of the default methods applies: it needs only forward passes (a soft tree).
FALLBACK_METHOD = "occlusion"


def inapplicable_reason(method: str, teacher: nn.Module, student: nn.Module, inputs: ExplainInputs) -> str | None:
    """Why ``method`` cannot compare these models on these inputs, or ``None`` when it can.

    Unknown names raise :class:`DistilensError` (did you mean …).
    """
    explainer = get_explainer(method)
    if not explainer.comparable:
        return "scores the units of one layer, which differ between teacher and student; use it with attribute()"
    for model, view in ((teacher, inputs.teacher), (student, inputs.student)):
        why = explainer.reason(model, view.inputs[:1])
        if why is not None:
            return why
    return None


def choose_methods(
    methods: Sequence[str], teacher: nn.Module, student: nn.Module, inputs: ExplainInputs, *, explicit: bool
) -> tuple[list[str], dict[str, str]]:
    """The methods a run explains with, checked before any training, and those left out with the reason.

    Args:
        methods: ``explain.methods`` of the config.
        teacher, student: The models, as they will be explained (weights need not be trained).
        inputs: What the stage will explain (:class:`~.inputs.ExplainInputs`).
        explicit: Whether the user named ``methods`` (else they are the default list).

    Returns:
        ``(run, skipped)``: names to run, in order, and ``{name: why not}``. From the
        default list, methods that do not apply (gradcam on tables, text, MLPs or
        TorchScript) are skipped; if none applies, :data:`FALLBACK_METHOD` runs where it can.

    Raises:
        ConfigError: an unknown name (with the closest valid ones), or an explicitly named
            method that does not apply here: one line saying why and what would.
    """
    run, skipped = [], {}
    for m in methods:
        try:
            why = inapplicable_reason(m, teacher, student, inputs)
        except DistilensError as exc:
            raise ConfigError(f"explain.methods: {exc}") from None
        if why is None:
            run.append(m)
        elif explicit:
            kind = inputs.kind
            usable = [n for n in explainers_for(kind) if inapplicable_reason(n, teacher, student, inputs) is None]
            raise ConfigError(f"explain.methods: '{m}' {why}; on this {kind} data use one of: {', '.join(usable)}")
        else:
            skipped[m] = why
    if not run and not explicit and inapplicable_reason(FALLBACK_METHOD, teacher, student, inputs) is None:
        run = [FALLBACK_METHOD]
    return run, skipped


def split_methods(
    methods: Sequence[str], teacher: nn.Module, student: nn.Module, inputs: ExplainInputs, skip_inapplicable: bool
) -> tuple[list[str], dict[str, str]]:
    """Methods to run now and ``{name: why not}``; an inapplicable one raises unless skipped, and so does none left."""
    run, skipped = [], {}
    for method in methods:
        why = inapplicable_reason(method, teacher, student, inputs)
        if why is None:
            run.append(method)
        elif skip_inapplicable:
            skipped[method] = why
        else:
            raise DistilensError(f"explain method '{method}' {why}; pick another method or skip it")
    if not run:
        raise DistilensError(f"no explain method applies here ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return run, skipped
