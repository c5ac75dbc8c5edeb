"""The explain stage: teacher and student explained on the same test inputs for the same class.

How is the modality's: maps on the pixel grid or per feature (images, tables), words (text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..report.inputs import Explanations
from .context import RunContext
from .data import DataResult

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
        block = self.explanations.block
        if self.skipped:
            block.setdefault("skipped", {}).update(self.skipped)
        return {"explanations": block}

    @classmethod
    def from_json(cls, metrics: dict[str, Any]) -> "ExplainResult":
        """The result that wrote ``metrics`` (metrics.json) back, without its maps."""
        block = metrics.get("explanations")
        if not block or not block.get("methods"):
            return cls(None, dict((block or {}).get("skipped", {})))
        return cls(Explanations(block))


def explain_stage(
    ctx: RunContext, data: DataResult, teacher: nn.Module, student: nn.Module, methods: list[str], skipped: dict[str, str]
) -> ExplainResult:
    """Explain with ``methods`` (chosen before training) and save what the report draws."""
    if not methods:
        return ExplainResult(None, skipped)
    explanations = data.modality.explain(ctx.config, data.bundle, teacher, student, methods)
    explanations.save(ctx.staging)
    return ExplainResult(explanations, skipped)
