"""Layer outputs by name, through forward hooks that are always removed.

Besides submodules, three pseudo-layers name what a model computes without a submodule of
its own; each is recorded from the same forward as the logits:

* ``pooled`` — the output of ``model.forward_features(ids)`` (a :class:`FeatureModel`), the
  (B, D) representation before the classifier head (the ``auto`` feature layer of a text
  model). Recorded by wrapping the instance's ``forward_features`` for the block.
* ``attention:G`` — the last layer's self-attention averaged into G groups of consecutive
  heads, (B, G, L, L). Recorded by a hook on the model's ``attention_layer`` (an
  :class:`AttentionLayerModel`); a model that only has ``attention_maps(ids)`` (an
  :class:`AttentionModel`, e.g. a Hugging Face teacher) gives it by a separate call.
* ``leaf_paths`` — a soft decision tree's (B, leaves) log path probabilities (a
  :class:`LeafModel`), recorded by wrapping its ``log_path_probs``.

:func:`tapped_output` computes a pseudo-layer by an explicit call when the forward did not
pass through it (e.g. an eval-mode tree, which follows its maximum path instead).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..registry import did_you_mean
from .capabilities import AttentionLayerModel, AttentionModel, FeatureModel, LeafModel
from .modes import eval_mode

__all__ = [
    "FeatureTap", "get_layer", "last_spatial_layer", "POOLED", "ATTENTION_PREFIX", "LEAF_PATHS", "is_pseudo_layer",
    "check_pseudo_layer", "pseudo_layer_output", "tapped_output", "default_feature_layer", "group_heads",
]

POOLED = "pooled"
ATTENTION_PREFIX = "attention:"
LEAF_PATHS = "leaf_paths"


def is_pseudo_layer(name: str) -> bool:
    """True for ``pooled``, ``attention:G`` and ``leaf_paths`` (outputs that name no submodule)."""
    return name in (POOLED, LEAF_PATHS) or name.startswith(ATTENTION_PREFIX)


def _groups(name: str) -> int:
    text = name[len(ATTENTION_PREFIX):]
    if not text.isdigit() or int(text) < 1:
        raise ModelError(f"layer '{name}': write attention:G with G ≥ 1 head groups, e.g. attention:1")
    return int(text)


def check_pseudo_layer(model: nn.Module, name: str) -> None:
    """Raise a :class:`ModelError` when ``model`` cannot produce the pseudo-layer ``name``."""
    if name == POOLED:
        ok, needs = isinstance(model, FeatureModel), "a text model with a forward_features() method"
    elif name == LEAF_PATHS:
        ok, needs = isinstance(model, LeafModel), "a soft decision tree (log_path_probs() and leaf_log_probs())"
    else:
        _groups(name)
        ok = isinstance(model, (AttentionLayerModel, AttentionModel))
        needs = "a transformer with attention_maps() or an attention_layer (e.g. tiny_transformer)"
    if not ok:
        raise ModelError(f"layer '{name}' needs {needs}; {type(model).__name__} has none")


def group_heads(attention: Tensor, groups: int) -> Tensor:
    """(B, H, L, L) → (B, G, L, L): the mean of each group of H/G consecutive heads.

    A mean of distributions is a distribution, so each row still sums to 1 (MiniLM's and
    TinyBERT's per-head transfer is the case G = H).
    """
    b, h, lq, lk = attention.shape
    if h % groups:
        raise ValueError(f"cannot split {h} attention heads into {groups} equal groups; pick a divisor of {h}")
    return attention.reshape(b, groups, h // groups, lq, lk).mean(2)  # (B, H, L, L) -> (B, G, L, L)


def pseudo_layer_output(model: nn.Module, name: str, x: Tensor) -> Tensor:
    """The pseudo-layer ``name`` of ``model`` on ``x`` by an explicit call (see the module docstring)."""
    check_pseudo_layer(model, name)
    if name == POOLED:
        return model.forward_features(x)  # type: ignore[operator]
    if name == LEAF_PATHS:
        return model.log_path_probs(x)[0]  # type: ignore[operator]
    if isinstance(model, AttentionModel):
        return group_heads(model.attention_maps(x)[-1], _groups(name))
    with FeatureTap(model, [name]) as tap:  # only the hook route: run the forward once
        model(x)
    return tap.outputs[name]


def tapped_output(tap: "FeatureTap", model: nn.Module, name: str, x: Tensor) -> Tensor:
    """``tap.outputs[name]``, or the pseudo-layer computed now when the forward did not pass through it."""
    if name in tap.outputs:
        return tap.outputs[name]
    if is_pseudo_layer(name):
        return pseudo_layer_output(model, name, x)
    raise ModelError(f"layer '{name}' produced no output in the forward pass; pick a layer that the forward uses")


def default_feature_layer(model: nn.Module, example: Tensor) -> str:
    """What ``auto`` means for feature losses: ``pooled`` for a text model (integer ids), else the last spatial layer."""
    if not example.is_floating_point() and isinstance(model, FeatureModel):
        return POOLED
    return last_spatial_layer(model, example)


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as in ``model.named_modules()``)."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        names = [n for n in modules if n]
        raise ModelError(
            f"layer '{name}' is not in the model{did_you_mean(name, names)}; layers: {', '.join(names[:20])}"
        )
    return modules[name]


class FeatureTap:
    """Record the outputs of named layers (and pseudo-layers) during forward passes.

    Use as a context manager; the hooks and method wrappers are removed on exit, also when
    the body raises.

    Example:
        >>> with FeatureTap(model, ["features.4"]) as tap:
        ...     logits = model(x)
        >>> tap.outputs["features.4"].shape
    """

    def __init__(self, model: nn.Module, layers: list[str]) -> None:
        self.model = model
        self.layers = list(layers)
        self.outputs: dict[str, Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._wrapped: list[str] = []

    def __enter__(self) -> "FeatureTap":
        if self.layers and isinstance(self.model, torch.jit.ScriptModule):
            raise ModelError("a TorchScript model takes no hooks, so its layers cannot be tapped; use an eager (nn.Module) model")
        try:
            for name in self.layers:
                if is_pseudo_layer(name):
                    self._tap_pseudo(name)
                    continue
                module = get_layer(self.model, name)
                self._handles.append(module.register_forward_hook(self._hook(name, lambda out: out)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _tap_pseudo(self, name: str) -> None:
        check_pseudo_layer(self.model, name)
        if name == POOLED:
            self._wrap(name, "forward_features", lambda out: out)
        elif name == LEAF_PATHS:
            self._wrap(name, "log_path_probs", lambda out: out[0])
        elif isinstance(self.model, AttentionLayerModel):
            groups = _groups(name)
            module = get_layer(self.model, self.model.attention_layer)
            self._handles.append(module.register_forward_hook(self._hook(name, lambda out: group_heads(out[1], groups))))
        # else: attention_maps() only, computed on demand by tapped_output

    def _wrap(self, name: str, method: str, pick: Callable[[Any], Tensor]) -> None:
        """Record ``pick(output)`` of the instance's ``method`` by shadowing the bound method with a recording one."""
        inner = getattr(self.model, method)

        def recording(*args: object, **kwargs: object) -> Any:
            out = inner(*args, **kwargs)
            self.outputs[name] = pick(out)
            return out

        setattr(self.model, method, recording)
        self._wrapped.append(method)

    def _hook(self, name: str, pick: Callable[[Any], Tensor]):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, args: object, output: Any) -> None:
            self.outputs[name] = pick(output)

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for method in self._wrapped:
            delattr(self.model, method)  # the instance attribute; the class method shows again
        self._wrapped.clear()


def last_spatial_layer(model: nn.Module, example: Tensor) -> str:
    """Name of the last leaf module (in execution order) whose output is (B, C, H, W), H·W > 1.

    This is where Grad-CAM looks by default ("auto"). Raises for models without one.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError("a TorchScript model takes no hooks, so it has no layer to tap; use an eager (nn.Module) model")
    order: list[str] = []
    handles = []
    try:
        for name, module in model.named_modules():
            if name and not list(module.children()):
                handles.append(
                    module.register_forward_hook(
                        lambda m, a, out, name=name: order.append(name)
                        if isinstance(out, Tensor) and out.dim() == 4 and out.shape[-2:].numel() > 1
                        else None
                    )
                )
        with torch.no_grad(), eval_mode(model):
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ModelError("the model has no spatial (B, C, H, W) layer; Grad-CAM needs an image model")
    return order[-1]
