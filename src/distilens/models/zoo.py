"""The architecture zoo: small, readable classifiers registered by name."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from ..registry import Registry
from .soft_tree import SoftDecisionTree

__all__ = ["MODELS", "build_model", "count_params", "MLP", "CNN", "SoftDecisionTree"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class MLP(nn.Module):
    """Fully connected classifier for tables (or flattened images).

    Args:
        in_features: Input width F.
        num_classes: Number of classes C.
        hidden: Widths of the hidden layers.
        dropout: Dropout after each hidden layer.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (128,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) or (B, C, H, W) → logits (B, num_classes)."""
        return self.head(self.features(x))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class CNN(nn.Module):
    """A VGG-style CNN: two stages of two 3×3 conv-BN-ReLU blocks, a 2×2 max-pool between them.

    The last block's output (``features.4``, B × 2w × H/2 × W/2) is the "last spatial layer"
    that Grad-CAM and feature losses use by default.

    Args:
        in_channels: Input channels.
        num_classes: Number of classes.
        width: Channels of the first stage (the second has 2·width).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_block(in_channels, w),
            _conv_block(w, w),
            nn.MaxPool2d(2),
            _conv_block(w, 2 * w),
            _conv_block(2 * w, 2 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → logits (B, num_classes)."""
        return self.head(self.pool(self.features(x)).flatten(1))


@MODELS.register("mlp")
def mlp(spec: InputSpec, hidden: Sequence[int] = (128,), dropout: float = 0.0) -> nn.Module:
    """MLP on the flattened input; works for tables and images."""
    in_features = 1
    for s in spec.shape:
        in_features *= s
    return MLP(in_features, spec.num_classes, tuple(int(h) for h in hidden), float(dropout))


@MODELS.register("cnn")
def cnn(spec: InputSpec, width: int = 16) -> nn.Module:
    """VGG-style CNN for images; ``width`` sets the size (teacher ≈ 64, student ≈ 8)."""
    if spec.kind != "image":
        raise ModelError(f"model 'cnn' needs image data, but the data is a {spec.kind}; use 'mlp'")
    return CNN(spec.shape[0], spec.num_classes, int(width))


@MODELS.register("soft_tree")
def soft_tree(spec: InputSpec, depth: int = 4, penalty: float = 0.1, beta_init: float = 1.0) -> nn.Module:
    """Frosst & Hinton 2017 soft decision tree on the flattened input (see ``models/soft_tree.py``)."""
    return SoftDecisionTree(math.prod(spec.shape), spec.num_classes, int(depth), float(penalty), float(beta_init))


def build_model(arch: str, spec: InputSpec, **args: Any) -> nn.Module:
    """Build a registered architecture for data described by ``spec``.

    Args:
        arch: A name from ``distilens list models``.
        spec: The data's :class:`InputSpec` (input shape, classes).
        **args: The architecture's own options (e.g. ``width=8`` for ``cnn``).

    Example:
        >>> from distilens.data import load_dataset
        >>> student = build_model("cnn", load_dataset("digits").spec, width=8)
    """
    factory = MODELS.get(arch)
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p != "spec"]
    unknown = [k for k in args if k not in accepted]
    if unknown:
        raise ModelError(
            f"model '{arch}' has no option '{unknown[0]}'; its options are: {', '.join(accepted)}"
        )
    try:
        return factory(spec, **args)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{arch}' cannot be built with {args}: {exc}") from None


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
