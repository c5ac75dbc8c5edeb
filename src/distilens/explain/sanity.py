"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that reflects what the model learned must change when the weights are
destroyed. Cascading randomisation re-initialises the layers one by one from the output
towards the input, on a copy of the model, and after each step compares the new maps with
the original ones. On a trained model the similarity should fall; a method whose maps stay
alike (an edge detector in disguise) fails the check. Text models are checked the same way,
on their token scores; the similarity is computed over the scored tokens only (pads and
kept special tokens, 0 in every map, would make any two maps look alike).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..models.capabilities import unwrap
from .agreement import spearman, ssim
from .attribute import attribute, predicted_class
from .explainers import Kind, input_kind
from .hygiene import model_device, seeded

__all__ = ["cascading_randomization", "cascade_steps", "parameter_layers"]


def parameter_layers(model: nn.Module) -> list[str]:
    """The steps of the cascade, from the output towards the input: module names.

    A step is a module that owns parameters directly, or a whole element of an
    ``nn.ModuleList`` (a transformer's layer, one branch of parallel convolutions) with every
    parameter module inside it: randomising a block at a time is the paper's granularity
    (Inception v3's blocks) and keeps a 6-layer transformer at 6 steps for its layers, not 48.
    Order is the reverse of registration order, which is the forward order for the zoo's
    sequential models.
    """
    return list(cascade_steps(model))


def cascade_steps(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Step name → the parameter-owning modules that step re-initialises, output first (see :func:`parameter_layers`)."""
    blocks = [f"{name}.{i}" if name else str(i)
              for name, m in model.named_modules() if isinstance(m, nn.ModuleList) for i in range(len(m))]
    steps: dict[str, list[nn.Module]] = {}
    owners = [(n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    for name, module in reversed(owners):
        step = next((b for b in blocks if name == b or name.startswith(b + ".")), name)  # outermost block first
        steps.setdefault(step, []).append(module)
    return steps


def _reinitialise(module: nn.Module) -> None:
    """Fresh weights: the module's own ``reset_parameters``, else N(0, σ of the old weights)."""
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()  # batch norm: weight 1, bias 0, running statistics reset
        return
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            p.normal_(0.0, float(p.std()) if p.numel() > 1 else 0.01)


def _token_positions(model: nn.Module, ids: Tensor, keep: Tensor | None) -> Tensor:
    """(N, L) bool: the tokens an explainer scores (neither padding nor kept)."""
    scored = ids != unwrap(model).pad_id  # type: ignore[union-attr]  # a TokenModel: attribute() checked it
    return scored if keep is None else scored & ~keep.to(ids.device).bool()


#: Per input kind, the positions compared (``None``: all of them).
_SCORED: dict[Kind, Callable[[nn.Module, Tensor, Tensor | None], Tensor]] = {"text": _token_positions}


def _rank_similarity(a: Tensor, b: Tensor, scored: Tensor | None) -> Tensor:
    """(N,) Spearman of each sample's maps, over its ``scored`` positions when given (NaN for none)."""
    if scored is None:
        return spearman(a, b)
    scored = scored.to(a.device)
    return torch.cat([
        spearman(x[m][None], y[m][None]) if bool(m.any()) else torch.tensor([math.nan]) for x, y, m in zip(a, b, scored)
    ])


def _mean(x: Tensor) -> float | None:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else None


@torch.no_grad()
def _clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def cascading_randomization(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor | None = None,
    method: str = "gradcam",
    *,
    seed: int = 0,
    max_layers: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Similarity of the maps after randomising the top 1, 2, … parameter layers (blocks: :func:`parameter_layers`).

    The original ``model`` is untouched (a deep copy is randomised); re-initialisation is
    seeded and restores the caller's random state. The target stays the original model's
    class, so only the weights change between the maps.

    Args:
        model: A classifier returning (B, C) logits.
        inputs: (N, *shape) inputs to explain: images, rows or a text model's token ids.
        target: (N,) classes; default the model's predicted classes.
        method: Explainer name.
        seed: Seeds the re-initialisation.
        max_layers: Stop after this many steps (default: all, down to the input).
        **options: Passed to the explainer (for text, ``keep``: the special tokens).

    Returns:
        ``layers``: names randomised cumulatively, output first; per layer the mean over
        samples of ``spearman`` (signed maps), ``abs_spearman`` (Spearman of |maps|, as in
        the paper) and ``ssim`` (image maps only, else ``None``); NaNs are skipped.

    Example:
        >>> out = cascading_randomization(trained, x, method="gradcam")
        >>> out["spearman"][-1] < out["spearman"][0]
    """
    device = model_device(model)
    if target is None:
        target = predicted_class(model, inputs.to(device)).cpu()
    original = attribute(model, inputs, target, method=method, **options)
    image = original.dim() == 4
    positions = _SCORED.get(input_kind(inputs))
    scored = positions(model, inputs, options.get("keep")) if positions is not None else None
    work = _clone(model)
    steps = list(cascade_steps(work).items())[:max_layers]
    result: dict[str, Any] = {"method": method, "layers": [], "spearman": [], "abs_spearman": [], "ssim": []}
    for i, (name, modules) in enumerate(steps):
        with seeded(seed + i, device):
            for module in modules:
                _reinitialise(module)
        maps = attribute(work, inputs, target, method=method, **options)
        result["layers"].append(name)
        result["spearman"].append(_mean(_rank_similarity(original, maps, scored)))
        result["abs_spearman"].append(_mean(_rank_similarity(original.abs(), maps.abs(), scored)))
        result["ssim"].append(_mean(ssim(original, maps)) if image else None)
    return result
