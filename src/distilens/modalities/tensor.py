"""What images and tables share: both models read the same float tensors, explained by ``attribute``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..data import DataBundle, InputSpec
from ..explain import ExplainInputs, attribute
from .base import Modality

__all__ = ["TensorModality"]


class TensorModality(Modality):
    """Inputs that are float tensors, the same for teacher and student (images, table rows)."""

    def explain_inputs(self, bundle: DataBundle) -> ExplainInputs:
        """The test split, read alike by both models; maps meet as they are (pixels or features)."""
        return ExplainInputs.from_split(bundle.test, class_names=bundle.spec.class_names)

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        """Per row, its attribution map on the CPU."""
        return list(attribute(model, x, target=target, method=method or "integrated_gradients").cpu())
