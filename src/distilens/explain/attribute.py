"""One verb, :func:`attribute`, over Captum's attribution methods, registered by name.

This module holds the verb, the registry and the gradient methods (saliency, input ×
gradient, Integrated Gradients, SmoothGrad, DeepLIFT). Layer methods (Grad-CAM, activation
attention, neuron importance) live in :mod:`.layers`, perturbation methods (occlusion,
KernelSHAP, LIME) in :mod:`.perturbation`; both register here when the package is imported.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal

import torch
from captum.attr import DeepLift, InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from torch import Tensor, nn

from ..errors import DistilensError
from ..registry import Registry

__all__ = ["attribute", "EXPLAINERS", "predicted_class", "eval_mode", "seeded", "Baseline"]

Explainer = Callable[..., Tensor]
EXPLAINERS: Registry[Explainer] = Registry("explainer")

#: A reference input: a constant, or a tensor shaped like one input (or like the batch).
Baseline = float | Tensor

#: The attribute transformers sets on a model once its output-capturing hooks are installed.
_HF_HOOKS_MARK = "_output_capturing_hooks_installed"

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch norm uses running statistics), restore afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def no_hook_leak(model: nn.Module) -> Iterator[None]:
    """Remove, on exit, every hook added to ``model``'s modules inside the block.

    Captum removes its own hooks, but not on every error path; this is the safety net that
    makes "no hook left behind, also after a failing call" hold for all methods.

    Hugging Face transformers (≥ 5) install output-capturing hooks the first time attentions
    or hidden states are asked for, and mark the model so as never to install them again;
    when such hooks are removed here, the mark is cleared too, so the next call re-installs
    them instead of silently returning no attentions.
    """
    before = {id(m): {d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in model.modules()}
    marked = {id(m) for m in model.modules() if getattr(m, _HF_HOOKS_MARK, False)}
    try:
        yield
    finally:
        for m in model.modules():
            known = before.get(id(m), {})
            for d in _HOOK_DICTS:
                hooks = getattr(m, d, None)
                if hooks:
                    for key in [k for k in hooks if k not in known.get(d, set())]:
                        del hooks[key]
            if getattr(m, _HF_HOOKS_MARK, False) and id(m) not in marked:
                setattr(m, _HF_HOOKS_MARK, False)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators inside the block and restore their state afterwards.

    Captum's sampling methods draw from the global generators, so this is how they become
    deterministic without changing the caller's random stream.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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
            restored afterwards, and no hook is left on it (also when the call fails).
        inputs: (B, C, H, W) images or (B, F) rows on any device (moved to the model's).
        target: (B,) classes, one int for all, or ``None`` for the model's predicted class.
            To compare two models, pass the same target to both (:func:`compare` does).
        method: A name from ``distilens list explainers``.
        **options: The method's options (e.g. ``n_steps`` for integrated_gradients,
            ``layer`` for gradcam, ``seed`` for the sampling methods).

    Returns:
        Attributions on ``inputs``' device: shaped like ``inputs`` for gradient and
        perturbation methods; (B, 1, H, W) upsampled to the input for ``gradcam`` and
        ``attention``; (B, units) for ``neuron_importance``.

    Example:
        >>> maps = attribute(model, x, method="integrated_gradients", n_steps=64)
    """
    fn = EXPLAINERS.get(method)
    if inputs.dim() not in (2, 4):
        raise DistilensError(
            f"explainer '{method}': inputs must be (B, F) rows or (B, C, H, W) images, got shape {tuple(inputs.shape)}"
        )
    device = next(model.parameters()).device
    x = inputs.detach().to(device).float().requires_grad_(True)
    with eval_mode(model), no_hook_leak(model):
        if target is None:
            target = predicted_class(model, x)
        if isinstance(target, Tensor):
            target = target.to(device)
        try:
            out = fn(model, x, target, **options)
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise DistilensError(f"explainer '{method}': {exc}; see the method's docstring for its options") from None
            raise
    return out.detach().to(inputs.device)


def _baseline(baseline: Baseline, x: Tensor) -> float | Tensor:
    """A float stays a float; a tensor of one input's shape (or the batch's) moves to ``x``."""
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


@EXPLAINERS.register("saliency")
def _saliency(model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """|∂f_target/∂x| (Simonyan et al. 2014)."""
    return Saliency(model).attribute(x, target=target, abs=True)


@EXPLAINERS.register("input_x_gradient")
def _input_x_gradient(model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """x ⊙ ∂f_target/∂x (Shrikumar et al. 2016); on a linear model, w ⊙ x exactly."""
    return InputXGradient(model).attribute(x, target=target)


@EXPLAINERS.register("integrated_gradients")
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
    return IntegratedGradients(model).attribute(
        x, baselines=_baseline(baseline, x), target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )


@EXPLAINERS.register("deeplift")
def _deeplift(model: nn.Module, x: Tensor, target: Tensor | int, baseline: Baseline = 0.0) -> Tensor:
    """DeepLIFT, rescale rule (Shrikumar et al. 2017): Σ attributions = f(x) − f(x′) exactly.

    Needs each ``nn.ReLU`` module used once in the forward pass (true of the zoo models).
    """
    with warnings.catch_warnings():
        # Captum announces, every call, that it hooks the activations (and removes them).
        warnings.filterwarnings("ignore", message=r"Setting forward, backward hooks", category=UserWarning)
        return DeepLift(model).attribute(x, baselines=_baseline(baseline, x), target=target)


@EXPLAINERS.register("smoothgrad")
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
