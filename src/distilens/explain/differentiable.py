"""Explanation maps that stay in the autograd graph, for explanation-guided losses.

Captum's methods detach their outputs; a loss that aligns the student's explanation with
the teacher's needs the student's map as a differentiable function of its weights
(``create_graph=True``: the loss's gradient goes through a gradient).

Example:
    >>> cam = differentiable_gradcam(student, x, target, create_graph=True)  # (B, h, w)
    >>> loss = 1 - F.cosine_similarity(cam.flatten(1), teacher_cam.flatten(1)).mean()
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.tap import FeatureTap, last_spatial_layer

__all__ = ["gradcam_from", "differentiable_gradcam", "input_gradients"]


def gradcam_from(features: Tensor, grads: Tensor, relu: bool = True) -> Tensor:
    """Grad-CAM from a layer's activations and the target score's gradient w.r.t. them.

    Selvaraju et al. 2017: α_c = mean over h, w of ∂y/∂A_c; map = ReLU(Σ_c α_c · A_c).

    Args:
        features: (B, C, h, w) activations A.
        grads: (B, C, h, w) ∂y_target/∂A.
        relu: Keep only positive evidence (the paper's choice).

    Returns:
        (B, h, w) maps.
    """
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    cam = (alpha * features).sum(dim=1)  # (B, h, w)
    return torch.relu(cam) if relu else cam


def _target_score(logits: Tensor, target: Tensor | int) -> Tensor:
    if isinstance(target, int):
        return logits[:, target].sum()
    return logits.gather(1, target.view(-1, 1).to(logits.device)).sum()


def differentiable_gradcam(
    model: nn.Module, inputs: Tensor, target: Tensor | int, layer: str = "auto", *, create_graph: bool = True
) -> Tensor:
    """Grad-CAM of ``model`` at ``layer`` for ``target``; differentiable w.r.t. the weights.

    The model is used in its current mode (a training loop calls it in train mode); samples
    are independent because each target score only depends on its own input in eval mode.

    Args:
        model: A CNN returning (B, C) logits.
        inputs: (B, C_in, H, W).
        target: (B,) classes or one class for all.
        layer: Layer name, or ``auto`` for the last spatial layer.
        create_graph: Keep the graph of the gradient (needed to train through the map).

    Returns:
        (B, h, w) maps at the layer's resolution.
    """
    name = last_spatial_layer(model, inputs) if layer == "auto" else layer
    with FeatureTap(model, [name]) as tap:
        logits = model(inputs)
    features = tap.outputs[name]
    (grads,) = torch.autograd.grad(_target_score(logits, target), features, create_graph=create_graph)
    return gradcam_from(features, grads)


def input_gradients(model: nn.Module, inputs: Tensor, target: Tensor | int, *, create_graph: bool = True) -> Tensor:
    """∂y_target/∂x for each sample, shaped like ``inputs``; differentiable w.r.t. the weights.

    Srinivas & Fleuret 2018 ("Knowledge Transfer with Jacobian Matching") align these maps
    between teacher and student.
    """
    x = inputs.detach().requires_grad_(True)
    logits = model(x)
    (grads,) = torch.autograd.grad(_target_score(logits, target), x, create_graph=create_graph)
    return grads
