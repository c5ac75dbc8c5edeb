"""The explain stage: teacher and student explained on the same test inputs for the same class.

The modality builds what is explained (:meth:`Modality.explain_inputs`: pixels, features or
words); :func:`distilens.explain.explain_stage` explains, scores and saves the maps the same
way for every kind of data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .. import explain
from ..explain import ExplainInputs
from ..report.inputs import Explanations
from .context import RunContext

__all__ = ["ExplainResult", "explain_stage"]


@dataclass
class ExplainResult:
    """The explanations of a run, or why there are none.

    Attributes:
        explanations: The block, maps and word payload (``None`` when no method ran).
        skipped: Default methods left out, with the reason.
    """

    explanations: Explanations | None
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``explanations`` of metrics.json (absent when nothing was explained or skipped)."""
        if self.explanations is None:
            return {"explanations": {"methods": [], "skipped": self.skipped}} if self.skipped else {}
        return {"explanations": self.explanations.block}

    @classmethod
    def from_json(cls, metrics: dict[str, Any]) -> "ExplainResult":
        """The result that wrote ``metrics`` (metrics.json) back, without its maps."""
        block = metrics.get("explanations")
        if not block or not block.get("methods"):
            return cls(None, dict((block or {}).get("skipped", {})))
        return cls(Explanations(block), dict(block.get("skipped", {})))


def explain_stage(
    ctx: RunContext, inputs: ExplainInputs, teacher: nn.Module, student: nn.Module, methods: list[str],
    skipped: dict[str, str], others: dict[str, nn.Module] | None = None, *, reuse_teacher: bool = True,
) -> ExplainResult:
    """Explain with ``methods`` (chosen before training); the maps go into the run folder.

    ``others`` (role → model: the label-only ``baseline``, ``plain_kd``, ``teacher_reseed``,
    ``init``) are explained the same way against the same teacher maps (the evidence, issue 15).
    The teacher's part (maps, faithfulness, sanity check) is read from the run's ``cache/`` or
    ``distill.cache_dir`` when an earlier run computed it for the same teacher, samples and
    settings, and is kept in both for the next run (:class:`~distilens.explain.TeacherMemo`);
    ``reuse_teacher=False`` computes it afresh and keeps nothing (``distilens explain RUN``: a
    run folder from elsewhere is explained again, not read back).
    The report draws the maps just saved, read back once (:meth:`Explanations.load`).
    """
    if not methods:
        return ExplainResult(None, skipped)
    cfg = ctx.config
    memo = None
    if reuse_teacher:
        read, write = ctx.cache_folders()
        memo = explain.TeacherMemo(teacher, directories=read, save_to=write)
    block = explain.explain_stage(teacher, student, inputs, methods, ctx.staging, config=cfg.explain, seed=cfg.seed,
                                  skipped=skipped, others=others, memo=memo)
    return ExplainResult(Explanations.load(block, ctx.staging, []), skipped)
