"""Tables (F,): CSV columns imputed, one-hot encoded and standardised; explained per feature."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..config import DataConfig
from ..data import InputSpec
from .base import MODALITIES
from .tensor import TensorModality

__all__ = ["TableModality"]


class TableModality(TensorModality):
    """CSV tables and the table built-ins; attributions compared feature by feature."""

    kind = "table"
    align = "features"

    def claims(self, data: DataConfig) -> bool:
        return data.source.startswith("csv:") and data.text is None

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        """Per row, ``{feature: attribution}`` (the map when the spec names no features)."""
        maps = super().attribute_rows(model, x, target, inputs, start, spec, method)
        if not spec.feature_names:
            return maps
        return [{f: float(v) for f, v in zip(spec.feature_names, m.tolist())} for m in maps]


MODALITIES.register("table")(TableModality())
