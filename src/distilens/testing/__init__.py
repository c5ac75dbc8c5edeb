"""Toy models with closed-form attributions and shared assertions, used by the tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.bundle import DataBundle, InputSpec, Split

__all__ = ["LinearModel", "hook_count", "assert_no_hooks", "tiny_bundle"]


class LinearModel(nn.Module):
    """f(x) = W·flatten(x) + b: gradients are W's rows, so attributions have closed forms.

    For target class c: saliency = |W_c|, input × gradient = W_c ⊙ x, and Integrated
    Gradients from baseline x′ = W_c ⊙ (x − x′) exactly.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone() if bias is not None else torch.zeros(weight.shape[0]))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def hook_count(model: nn.Module) -> int:
    """Number of forward, forward-pre and backward hooks on ``model`` and its submodules."""
    total = 0
    for m in model.modules():
        total += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        total += len(getattr(m, "_backward_pre_hooks", {}))
    return total


def assert_no_hooks(model: nn.Module) -> None:
    """Fail if any hook is left on ``model``."""
    n = hook_count(model)
    assert n == 0, f"{n} hook(s) left on the model"


def tiny_bundle(n: int = 60, classes: int = 3, shape: tuple[int, ...] = (1, 6, 6), seed: int = 0) -> DataBundle:
    """A small random bundle with learnable labels: class c adds c to the first half of the features.

    Images when ``shape`` has 3 dimensions, else a table. Val and test are every third sample.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.arange(n) % classes
    flat = x.view(n, -1)
    flat[:, : flat.shape[1] // 2] += y.view(-1, 1).float()
    kind = "image" if len(shape) == 3 else "table"
    spec = InputSpec(kind, tuple(shape), tuple(str(c) for c in range(classes)))
    split = Split(x, y)
    return DataBundle("tiny", split, split.subset(torch.arange(0, n, 3)), split.subset(torch.arange(1, n, 3)), spec)
