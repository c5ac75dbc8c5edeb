"""Convolutional image classifiers for the zoo: a CIFAR-style ResNet and a MobileNet.

Both work from 8×8 inputs (digits) up: they downsample twice inside the network (so an
8×8 input ends on a 2×2 grid that Grad-CAM can use), plus once more in the stem when the
shorter input side is 64 or more. Every block ends in an ``nn.ReLU`` module, so the last
spatial layer (Grad-CAM's default) is the output of the last block.

The sizes papers name are registered too: ``resnet8/20/32/56`` (He et al. 2016),
``resnet8x4``/``resnet32x4`` (the ×4-wide pair of the CRD and DKD tables) and MobileNet v1's
full 13-block plan with its width multipliers (``mobilenet_v1``, ``mobilenet_v1_075/050/025``;
Howard et al. 2017). MobileNet v1 downsamples four times inside the network (a 32×32 input
ends on 2×2, an 8×8 one on 1×1). ``tests/test_convnets.py`` checks their parameter counts
against the papers'.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from .zoo import MODELS, build_model, count_params
from .text import REFERENCE_TEXT_SPEC, TEXT_MODELS

__all__ = ["ResNet", "MobileNet", "RESNET_SIZES", "MOBILENET_V1_SIZES", "MOBILENET_V1_PLAN", "describe_models"]


def _stem_stride(spec: InputSpec) -> int:
    return 2 if min(spec.shape[1:]) >= 64 else 1


def _needs_image(name: str, spec: InputSpec) -> None:
    if spec.kind != "image":
        raise ModelError(f"model '{name}' needs image data, but the data is a {spec.kind}; use 'mlp'")


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and an identity (or 1×1 projection) shortcut, then ReLU (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU()  # a module, so that hooks see the block's output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, §4.2): depth 6n+2, three stages of n basic blocks.

    Stage widths are ``width``, 2·``width``, 4·``width``; stages 2 and 3 halve the grid.

    Args:
        in_channels: Input channels.
        num_classes: Number of classes.
        depth: 6n+2 layers: 8, 14, 20, 32, 44, 56 …
        width: Channels of the first stage.
        stem_stride: Stride of the first convolution.
        stem_width: Channels of the first convolution (default ``width``); when it differs
            from ``width`` the first block gets a projection shortcut.
    """

    def __init__(
        self, in_channels: int, num_classes: int, depth: int = 20, width: int = 16, stem_stride: int = 1,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, …), not {depth}")
        if width < 1:
            raise ValueError(f"width must be positive, not {width}")
        n = (depth - 2) // 6
        stem = width if stem_width is None else stem_width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        c_in = stem
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → logits (B, num_classes)."""
        return self.head(self.pool(self.features(self.stem(x))).flatten(1))


def _dw_separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 conv-BN-ReLU then pointwise 1×1 conv-BN-ReLU (Howard et al. 2017)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


# (output channels at width 1.0, stride) per depthwise-separable block.
_MOBILENET_PLAN = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
# MobileNet v1 (Howard et al. 2017, Table 1), 13 blocks. The table's stride 2 for the
# 13th block is a misprint: its input and output are both 7×7 there, so it is 1 here.
MOBILENET_V1_PLAN = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))


class MobileNet(nn.Module):
    """MobileNet-style classifier (Howard et al. 2017): a 3×3 stem then depthwise-separable blocks.

    Channels are 32 (stem), 64, 128, 128, 256, 256, each times ``width`` (at least 4).

    Args:
        in_channels: Input channels.
        num_classes: Number of classes.
        width: Width multiplier α (1.0 = the plan above; 0.25 ≈ 1/14 of the parameters).
        stem_stride: Stride of the first convolution.
        plan: (output channels at α = 1, stride) per depthwise-separable block; default the
            five above, ``MOBILENET_V1_PLAN`` the paper's thirteen.
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: float = 1.0, stem_stride: int = 1,
        plan: tuple[tuple[int, int], ...] = _MOBILENET_PLAN,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, not {width}")

        def scaled(c: int) -> int:
            return max(4, int(round(c * width)))

        c = scaled(32)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, c, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        ]
        for c_out, stride in plan:
            layers.append(_dw_separable(c, scaled(c_out), stride))
            c = scaled(c_out)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → logits (B, num_classes)."""
        return self.head(self.pool(self.features(x)).flatten(1))


@MODELS.register("resnet")
def resnet(spec: InputSpec, depth: int = 20, width: int = 16) -> nn.Module:
    """CIFAR-style ResNet; teacher ≈ depth 20–32, width 16–32 (0.27M–1.9M params), student ≈ depth 8, width 8 (20k)."""
    _needs_image("resnet", spec)
    return ResNet(spec.shape[0], spec.num_classes, int(depth), int(width), _stem_stride(spec))


@MODELS.register("mobilenet")
def mobilenet(spec: InputSpec, width: float = 1.0) -> nn.Module:
    """MobileNet with depthwise-separable blocks; teacher ≈ width 1.0 (0.14M params), student ≈ width 0.25 (11k)."""
    _needs_image("mobilenet", spec)
    return MobileNet(spec.shape[0], spec.num_classes, float(width), _stem_stride(spec))


# name → (depth, first-stage width, stem width). He et al. 2016 §4.2: three stages of n blocks
# at 16/32/64 channels. The ×4 pair is the CRD code's (Tian et al. 2020), also used by DKD
# (Zhao et al. 2022): 64/128/256 channels after a 32-channel stem.
RESNET_SIZES: dict[str, tuple[int, int, int]] = {
    "resnet8": (8, 16, 16),
    "resnet20": (20, 16, 16),
    "resnet32": (32, 16, 16),
    "resnet56": (56, 16, 16),
    "resnet8x4": (8, 64, 32),
    "resnet32x4": (32, 64, 32),
}
# name → width multiplier α of MobileNet v1 (Howard et al. 2017, Table 6).
MOBILENET_V1_SIZES: dict[str, float] = {"mobilenet_v1_075": 0.75, "mobilenet_v1_050": 0.5, "mobilenet_v1_025": 0.25}


def _register_resnet(name: str, depth: int, width: int, stem: int) -> None:
    def factory(spec: InputSpec) -> nn.Module:
        _needs_image(name, spec)
        return ResNet(spec.shape[0], spec.num_classes, depth, width, _stem_stride(spec), stem_width=stem)

    n = (depth - 2) // 6
    wide = stem != width
    title = f"ResNet-{depth}×{width // 16} (CRD/DKD)" if wide else f"ResNet-{depth} (He et al. 2016, CIFAR plan)"
    factory.__doc__ = (
        f"{title}: 3 stages of {n} basic block{'s' if n > 1 else ''}, {width}/{2 * width}/{4 * width} channels"
        + (f" after a {stem}-channel stem." if wide else ".")
    )
    factory.__name__ = factory.__qualname__ = name
    MODELS.register(name)(factory)


def _register_mobilenet_v1(name: str, width: float) -> None:
    def factory(spec: InputSpec) -> nn.Module:
        return mobilenet_v1(spec, width)

    factory.__doc__ = f"MobileNet v1 (13 blocks) at width multiplier {width}."
    factory.__name__ = factory.__qualname__ = name
    MODELS.register(name)(factory)


@MODELS.register("mobilenet_v1")
def mobilenet_v1(spec: InputSpec, width: float = 1.0) -> nn.Module:
    """MobileNet v1 of Howard et al. 2017 (13 depthwise-separable blocks); ``width`` is α (4.2M params at 1.0 on ImageNet)."""
    _needs_image("mobilenet_v1", spec)
    return MobileNet(spec.shape[0], spec.num_classes, float(width), _stem_stride(spec), plan=MOBILENET_V1_PLAN)


for _name, (_depth, _width, _stem) in RESNET_SIZES.items():
    _register_resnet(_name, _depth, _width, _stem)
for _name, _alpha in MOBILENET_V1_SIZES.items():
    _register_mobilenet_v1(_name, _alpha)


def describe_models(spec: InputSpec) -> list[dict[str, Any]]:
    """Every registered model with its parameter count at default arguments for ``spec``.

    Returns:
        One dict per model, sorted by name: ``name``, ``params`` (``None`` when the model
        does not apply to this data), ``summary`` (the first docstring line) and ``note``
        (why it does not apply, else ``""``).

    Example:
        >>> for row in describe_models(load_dataset("digits").spec):
        ...     print(row["name"], row["params"])
    """
    rows = []
    for name in MODELS.names():
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()
        try:
            params: int | None = count_params(build_model(name, spec))
            note = ""
        except ModelError as exc:
            params, note = None, str(exc)
            if name in TEXT_MODELS:  # count them for a reference text input instead
                params, note = count_params(build_model(name, REFERENCE_TEXT_SPEC)), "text: 20,000-token vocabulary, 128 tokens"
        rows.append({"name": name, "params": params, "summary": doc[0] if doc else "", "note": note})
    return rows
