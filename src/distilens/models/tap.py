"""Layer outputs by name, through forward hooks that are always removed."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..registry import did_you_mean

__all__ = ["FeatureTap", "get_layer", "last_spatial_layer"]


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

    def __enter__(self) -> "FeatureTap":
        if self.layers and isinstance(self.model, torch.jit.ScriptModule):
            raise ModelError("a TorchScript model takes no hooks, so its layers cannot be tapped; use an eager (nn.Module) model")
        try:
            for name in self.layers:
                module = get_layer(self.model, name)
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _hook(self, name: str):  # noqa: ANN202 - a torch hook
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            self.outputs[name] = output

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


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
