"""Explainers that look inside a named layer: Grad-CAM, activation attention, neuron importance.

Importing this module registers the methods in :data:`~.explainers.EXPLAINERS`, for image
inputs (``neuron_importance`` also for tables).
"""

from __future__ import annotations

# Captum is imported inside the functions that use it: importing the explain package (as
# `distilens list` and every command's start do) does not pay for it.

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DistilensError
from ..models.tap import FeatureTap, get_layer, last_spatial_layer
from .explainers import needs_gradients, needs_spatial_layer, register_explainer
from .gradients import Baseline, baseline_like

__all__ = ["unit_layer"]


def _upsample(maps: Tensor, x: Tensor) -> Tensor:
    """(B, 1, h, w) → (B, 1, H, W) bilinear, to the input's grid."""
    if maps.shape[-2:] != x.shape[-2:]:
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return maps


@register_explainer("gradcam", "image", requires=[needs_gradients, needs_spatial_layer])
def _gradcam(model: nn.Module, x: Tensor, target: Tensor | int, layer: str = "auto", upsample: bool = True) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c mean(∂f/∂A_c) · A_c) at a spatial layer.

    ``layer="auto"`` is the last layer with a (B, C, H, W) output, H·W > 1. Returns
    (B, 1, H, W) upsampled to the input (or (B, 1, h, w) with ``upsample=False``).
    """
    name = last_spatial_layer(model, x) if layer == "auto" else layer
    from captum.attr import LayerGradCam
    cam = LayerGradCam(model, get_layer(model, name)).attribute(x, target=target, relu_attributions=True)
    return _upsample(cam, x) if upsample else cam


@register_explainer("attention", "image", requires=[needs_spatial_layer])
def _attention(model: nn.Module, x: Tensor, target: Tensor | int, layer: str = "auto", p: int = 2) -> Tensor:
    """Activation attention Q = Σ_c |A_c|^p of a layer (Zagoruyko & Komodakis 2017), p = 2.

    What attention transfer matches between teacher and student: each sample's map is
    divided by its L2 norm, then upsampled to the input, (B, 1, H, W). It depends on the
    model only — the ``target`` is ignored (one map per input, whatever the class).
    """
    name = last_spatial_layer(model, x) if layer == "auto" else layer
    with torch.no_grad(), FeatureTap(model, [name]) as tap:
        model(x)
    a = tap.outputs[name]
    if a.dim() != 4:
        raise DistilensError(f"attention: layer '{name}' has output {tuple(a.shape)}, not (B, C, H, W); pick a conv layer")
    q = a.abs().pow(p).sum(1, keepdim=True)  # (B, 1, h, w)
    q = q / q.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return _upsample(q, x)


def unit_layer(model: nn.Module, x: Tensor) -> str:
    """The layer whose units ``neuron_importance`` scores by default.

    The last spatial layer of a CNN (units = channels), else the last leaf module before
    the output layer of an MLP (units = hidden features).
    """
    if x.dim() == 4:
        try:
            return last_spatial_layer(model, x)
        except DistilensError:
            pass  # no spatial layer (an MLP on images): fall through to the hidden layer
    order: list[str] = []
    handles = []
    try:
        for name, module in model.named_modules():
            if name and not list(module.children()):
                handles.append(module.register_forward_hook(lambda m, a, o, name=name: order.append(name)))
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if len(order) < 2:
        raise DistilensError("neuron_importance: the model has no hidden layer; pass layer=NAME")
    return order[-2]


@register_explainer("neuron_importance", "image", "table", requires=[needs_gradients], comparable=False)
def _neuron_importance(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    layer: str = "auto",
    n_steps: int = 32,
    baseline: Baseline = 0.0,
    internal_batch_size: int | None = 512,
) -> Tensor:
    """Importance of each unit of a layer for the target: layer conductance (Dhamdhere et al. 2019).

    Captum's LayerConductance, summed over the unit's spatial positions. **Returns
    (B, units)**, not the input's shape: channels of a conv layer, features of a dense
    one. Σ_units ≈ f(x) − f(x′) (completeness, as for Integrated Gradients).
    """
    name = unit_layer(model, x) if layer == "auto" else layer
    from captum.attr import LayerConductance
    cond = LayerConductance(model, get_layer(model, name)).attribute(
        x, baselines=baseline_like(baseline, x), target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )
    return cond.flatten(2).sum(2) if cond.dim() > 2 else cond  # (B, C, h, w) → (B, C)
