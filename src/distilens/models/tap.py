"""Layer outputs by name, through forward hooks that are always removed.

Text models (issue 8) add two pseudo-layers that name no submodule:

* ``pooled`` — the output of ``model.forward_features(ids)``, the (B, D) representation
  before the classifier head (the ``auto`` feature layer of a text model). A
  :class:`FeatureTap` records it by wrapping the instance's ``forward_features`` for the
  duration of the block, so it comes from the same forward as the logits.
* ``attention:G`` — the last layer's ``attention_maps(ids)[-1]`` averaged into G groups of
  consecutive heads, (B, G, L, L); computed by a separate call (:func:`pseudo_layer_output`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..registry import did_you_mean

__all__ = [
    "FeatureTap", "get_layer", "last_spatial_layer", "POOLED", "ATTENTION_PREFIX", "is_pseudo_layer",
    "check_pseudo_layer", "pseudo_layer_output", "tapped_output", "default_feature_layer", "group_heads",
]

POOLED = "pooled"
ATTENTION_PREFIX = "attention:"


def is_pseudo_layer(name: str) -> bool:
    """True for ``pooled`` and ``attention:G`` (text models' non-module layers)."""
    return name == POOLED or name.startswith(ATTENTION_PREFIX)


def _groups(name: str) -> int:
    text = name[len(ATTENTION_PREFIX):]
    if not text.isdigit() or int(text) < 1:
        raise ModelError(f"layer '{name}': write attention:G with G ≥ 1 head groups, e.g. attention:1")
    return int(text)


def check_pseudo_layer(model: nn.Module, name: str) -> None:
    """Raise a :class:`ModelError` when ``model`` cannot produce the pseudo-layer ``name``."""
    method = "forward_features" if name == POOLED else "attention_maps"
    if name != POOLED:
        _groups(name)
    if not callable(getattr(model, method, None)):
        raise ModelError(
            f"layer '{name}' needs a text model with a {method}() method; {type(model).__name__} has none"
        )


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
    return group_heads(model.attention_maps(x)[-1], _groups(name))  # type: ignore[operator]


def tapped_output(tap: "FeatureTap", model: nn.Module, name: str, x: Tensor) -> Tensor:
    """``tap.outputs[name]``, or the pseudo-layer computed now when the forward did not pass through it."""
    if name in tap.outputs:
        return tap.outputs[name]
    if is_pseudo_layer(name):
        return pseudo_layer_output(model, name, x)
    raise ModelError(f"layer '{name}' produced no output in the forward pass; pick a layer that the forward uses")


def default_feature_layer(model: nn.Module, example: Tensor) -> str:
    """What ``auto`` means for feature losses: ``pooled`` for a text model (integer ids), else the last spatial layer."""
    if not example.is_floating_point() and callable(getattr(model, "forward_features", None)):
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
    """Record the outputs of named layers during forward passes.

    Use as a context manager; the hooks are removed on exit, also when the body raises.

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
        self._patched = False

    def __enter__(self) -> "FeatureTap":
        if self.layers and isinstance(self.model, torch.jit.ScriptModule):
            raise ModelError("a TorchScript model takes no hooks, so its layers cannot be tapped; use an eager (nn.Module) model")
        try:
            for name in self.layers:
                if is_pseudo_layer(name):
                    self._wrap_pseudo(name)
                    continue
                module = get_layer(self.model, name)
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _wrap_pseudo(self, name: str) -> None:
        """Record ``pooled`` by shadowing the bound ``forward_features`` with a recording one."""
        check_pseudo_layer(self.model, name)
        if name != POOLED:
            return  # attention:G is computed on demand by tapped_output
        inner = self.model.forward_features  # type: ignore[union-attr]

        def recording(*args: object, **kwargs: object) -> Tensor:
            out = inner(*args, **kwargs)
            self.outputs[POOLED] = out
            return out

        self.model.forward_features = recording  # type: ignore[method-assign]
        self._patched = True

    def _hook(self, name: str):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            self.outputs[name] = output

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._patched:
            del self.model.forward_features  # the instance attribute; the class method shows again
            self._patched = False


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
        with torch.no_grad(), _eval_mode(model):
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ModelError("the model has no spatial (B, C, H, W) layer; Grad-CAM needs an image model")
    return order[-1]
