"""Explaining leaves a model as it was found: mode restored, no hook left, random state untouched.

Every explainer runs inside :func:`eval_mode` and :func:`no_hook_leak`; the sampling ones
draw their noise inside :func:`seeded`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..models.modes import eval_mode

__all__ = ["eval_mode", "no_hook_leak", "seeded", "model_device"]

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


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


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
