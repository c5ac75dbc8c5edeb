"""One verb, :func:`attribute`, over Captum's attribution methods, registered by name."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import Tensor, nn

from ..errors import DistilensError
from ..models.tap import get_layer, last_spatial_layer
from ..registry import Registry

__all__ = ["attribute", "EXPLAINERS", "predicted_class"]

Explainer = Callable[..., Tensor]
EXPLAINERS: Registry[Explainer] = Registry("explainer")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch norm uses running statistics), restore afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predicted_class(model: nn.Module, inputs: Tensor) -> Tensor:
    """(B,) argmax class of ``model`` on ``inputs`` (eval mode, mode restored)."""
    with eval_mode(model):
        return model(inputs).argmax(1)


def attribute(
    model: nn.Module, inputs: Tensor, target: Tensor | int | None = None, method: str = "integrated_gradients", **options: Any
) -> Tensor:
    """Attribute ``model``'s score for ``target`` to the input features.

    Args:
        model: A classifier returning (B, C) logits. Explained in eval mode; its mode is
            restored afterwards.
        inputs: (B, *shape) inputs on any device (moved to the model's device).
        target: (B,) classes, one int for all, or ``None`` for the model's predicted class.
            To compare two models, pass the same target to both (:func:`compare` does).
        method: A name from ``distilens list explainers``.
        **options: The method's options (e.g. ``n_steps`` for integrated_gradients,
            ``layer`` for gradcam).

    Returns:
        Attributions on ``inputs``' device: shaped like ``inputs`` for gradient methods,
        (B, 1, H, W) upsampled to the input size for ``gradcam``.

    Example:
        >>> maps = attribute(model, x, method="integrated_gradients", n_steps=64)
    """
    fn = EXPLAINERS.get(method)
    device = next(model.parameters()).device
    x = inputs.detach().to(device).requires_grad_(inputs.is_floating_point())
    with eval_mode(model):
        if target is None:
            target = predicted_class(model, x)
        if isinstance(target, Tensor):
            target = target.to(device)
        try:
            out = fn(model, x, target, **options)
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise DistilensError(f"explainer '{method}': {exc}") from None
            raise
    return out.detach().to(inputs.device)


@EXPLAINERS.register("saliency")
def _saliency(model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """|∂f_target/∂x| (Simonyan et al. 2014)."""
    return Saliency(model).attribute(x, target=target, abs=True)


@EXPLAINERS.register("integrated_gradients")
def _integrated_gradients(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    n_steps: int = 32,
    baseline: float = 0.0,
    internal_batch_size: int | None = 512,
) -> Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from a constant baseline.

    Σ attributions ≈ f(x) − f(baseline) (completeness); the default baseline 0 is the
    training mean, since inputs are normalised.
    """
    ig = IntegratedGradients(model)
    return ig.attribute(
        x, baselines=baseline, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )


@EXPLAINERS.register("gradcam")
def _gradcam(model: nn.Module, x: Tensor, target: Tensor | int, layer: str = "auto", upsample: bool = True) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c mean(∂f/∂A_c) · A_c) at a spatial layer.

    ``layer="auto"`` is the last layer with a (B, C, H, W) output, H·W > 1.
    """
    name = last_spatial_layer(model, x) if layer == "auto" else layer
    cam = LayerGradCam(model, get_layer(model, name)).attribute(x, target=target, relu_attributions=True)
    if upsample and x.dim() == 4 and cam.shape[-2:] != x.shape[-2:]:
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam
