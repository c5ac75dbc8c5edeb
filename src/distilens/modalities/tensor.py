"""What images and tables share: float inputs explained by the EXPLAINERS registry."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..config import RunConfig
from ..data import DataBundle, InputSpec
from ..errors import ConfigError, DistilensError
from ..explain import EXPLAINERS, attribute
from ..explain.stage import explain_models, inapplicable_reason
from ..report.inputs import Explanations
from .base import Modality, choose_from_config

__all__ = ["TensorModality"]


class TensorModality(Modality):
    """Inputs that are float tensors: explained with :data:`~distilens.explain.EXPLAINERS`."""

    def choose_methods(
        self, cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module
    ) -> tuple[list[str], dict[str, str]]:
        """Methods named explicitly in the config must apply to this data and these models; from
        the default list, those that do not apply (gradcam on tables, MLPs or TorchScript) are
        left out with the reason."""
        probe = bundle.train.inputs[:1]

        def reason(method: str) -> str | None:
            try:
                EXPLAINERS.get(method)
            except DistilensError as exc:
                raise ConfigError(f"explain.methods: {exc}") from None
            return inapplicable_reason(method, (teacher, student), probe)

        # None of the defaults applies (a soft-tree student): occlusion needs only forwards.
        return choose_from_config(cfg, reason, fallback="occlusion", hint="use integrated_gradients or saliency")

    def explain(
        self, cfg: RunConfig, bundle: DataBundle, teacher: nn.Module, student: nn.Module, methods: list[str]
    ) -> Explanations:
        e = cfg.explain
        comparisons, block = explain_models(
            teacher, student, bundle.test, methods, e.n_samples, seed=cfg.seed, steps=e.steps,
            sanity=e.sanity, sanity_samples=e.sanity_samples,
        )
        return Explanations(block, comparisons)

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        return list(attribute(model, x, target=target, method=method or "integrated_gradients").cpu())
