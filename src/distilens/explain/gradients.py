"""Gradient methods on image and table inputs: saliency, input × gradient, Integrated Gradients,
DeepLIFT, SmoothGrad (Captum's implementations).

Importing this module registers them in :data:`~.explainers.EXPLAINERS`; their token-id
versions for text models are in :mod:`.tokens`.
"""

from __future__ import annotations

# Captum is imported inside the functions that use it: importing the explain package (as
# `distilens list` and every command's start do) does not pay for it.

import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import DistilensError
from .explainers import needs_gradients, register_explainer
from .hygiene import seeded

__all__ = ["Baseline", "baseline_like"]

#: A reference input: a constant, or a tensor shaped like one input (or like the batch).
Baseline = float | Tensor


def baseline_like(baseline: Baseline, x: Tensor) -> float | Tensor:
    """A float stays a float; a tensor of one input's shape (or the batch's) moves to ``x`` and expands to it.

    Example:
        >>> baseline_like(torch.zeros(1, 8, 8), x).shape == x.shape  # x: (B, 1, 8, 8)
        True
    """
    if isinstance(baseline, Tensor):
        if tuple(baseline.shape) == tuple(x.shape[1:]):
            baseline = baseline.unsqueeze(0)
        if baseline.shape[1:] != x.shape[1:] or baseline.shape[0] not in (1, x.shape[0]):
            raise DistilensError(
                f"baseline of shape {tuple(baseline.shape)} does not fit inputs of shape {tuple(x.shape)}; "
                "pass one input's shape, the batch's shape, or a float"
            )
        return baseline.to(x.device, x.dtype).expand_as(x).contiguous()
    if isinstance(baseline, (int, float)):
        return float(baseline)
    raise DistilensError(f"baseline must be a float or a tensor, got {type(baseline).__name__}")


@register_explainer("saliency", "image", "table", requires=[needs_gradients])
def _saliency(model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """|∂f_target/∂x| (Simonyan et al. 2014)."""
    from captum.attr import Saliency
    return Saliency(model).attribute(x, target=target, abs=True)


@register_explainer("input_x_gradient", "image", "table", requires=[needs_gradients])
def _input_x_gradient(model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """x ⊙ ∂f_target/∂x (Shrikumar et al. 2016); on a linear model, w ⊙ x exactly."""
    from captum.attr import InputXGradient
    return InputXGradient(model).attribute(x, target=target)


@register_explainer("integrated_gradients", "image", "table", requires=[needs_gradients])
def _integrated_gradients(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    n_steps: int = 32,
    baseline: Baseline = 0.0,
    internal_batch_size: int | None = 512,
) -> Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) from a baseline x′.

    Σ attributions ≈ f(x) − f(x′) (completeness; Gauss–Legendre with ``n_steps`` points).
    The default baseline 0 is the training mean, since inputs are normalised; pass a float
    or a tensor of one input's shape for another reference.
    """
    from captum.attr import IntegratedGradients
    return IntegratedGradients(model).attribute(
        x, baselines=baseline_like(baseline, x), target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )


@register_explainer("deeplift", "image", "table", requires=[needs_gradients])
def _deeplift(model: nn.Module, x: Tensor, target: Tensor | int, baseline: Baseline = 0.0) -> Tensor:
    """DeepLIFT, rescale rule (Shrikumar et al. 2017): Σ attributions = f(x) − f(x′) exactly.

    Needs each ``nn.ReLU`` module used once in the forward pass (true of the zoo models).
    """
    with warnings.catch_warnings():
        # Captum announces, every call, that it hooks the activations (and removes them).
        warnings.filterwarnings("ignore", message=r"Setting forward, backward hooks", category=UserWarning)
        from captum.attr import DeepLift
        return DeepLift(model).attribute(x, baselines=baseline_like(baseline, x), target=target)


@register_explainer("smoothgrad", "image", "table", requires=[needs_gradients])
def _smoothgrad(
    model: nn.Module,
    x: Tensor,
    target: Tensor | int,
    nt_samples: int = 16,
    noise_level: float = 0.15,
    base: Literal["saliency", "integrated_gradients"] = "saliency",
    n_steps: int = 16,
    seed: int = 0,
) -> Tensor:
    """SmoothGrad (Smilkov et al. 2017): the mean of a map over noisy copies of the input.

    Captum's NoiseTunnel over saliency (|gradient|) or Integrated Gradients. The noise σ is
    ``noise_level`` × (max − min) of each sample, as in the paper. Each sample is drawn from
    a generator seeded with ``seed`` alone, so results do not depend on the batch and the
    caller's random state is restored.
    """
    if base not in ("saliency", "integrated_gradients"):
        raise DistilensError(f"smoothgrad: base must be 'saliency' or 'integrated_gradients', got '{base}'")
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
    inner = Saliency(model) if base == "saliency" else IntegratedGradients(model)
    extra: dict[str, Any] = {"abs": True} if base == "saliency" else {"n_steps": n_steps}
    tunnel = NoiseTunnel(inner)
    outs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ti = target if isinstance(target, int) else target[i : i + 1]
        sigma = float(noise_level * (xi.max() - xi.min()).detach().clamp_min(1e-12))
        with seeded(seed, x.device):
            outs.append(
                tunnel.attribute(xi, nt_type="smoothgrad", nt_samples=nt_samples, stdevs=sigma, target=ti, **extra)
            )
    return torch.cat(outs)
