"""ResNet and MobileNet: sizes, small and CIFAR-sized inputs, Grad-CAM layer, model listing."""

from __future__ import annotations

import pytest
import torch

from distilens.data import InputSpec
from distilens.errors import ModelError
from distilens.models import MODELS, build_model, count_params, describe_models, last_spatial_layer

SPECS = {
    "digits": InputSpec("image", (1, 8, 8), tuple("0123456789")),
    "cifar": InputSpec("image", (3, 32, 32), tuple("0123456789")),
}


@pytest.mark.parametrize("shape", ["digits", "cifar"])
@pytest.mark.parametrize("arch, args", [("resnet", {"depth": 8, "width": 4}), ("resnet", {"depth": 14, "width": 4}), ("mobilenet", {"width": 0.25})])
def test_forward_and_backward(arch: str, args: dict, shape: str) -> None:
    spec = SPECS[shape]
    model = build_model(arch, spec, **args)
    x = torch.randn(3, *spec.shape)
    out = model(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    layer = last_spatial_layer(model, x)
    assert layer.startswith("features.")  # the last block's output, for Grad-CAM


def test_resnet_depth_rule_and_sizes() -> None:
    spec = SPECS["cifar"]
    with pytest.raises(ModelError, match=r"6n\+2"):
        build_model("resnet", spec, depth=10)
    student = count_params(build_model("resnet", spec, depth=8, width=8))
    teacher = count_params(build_model("resnet", spec, depth=20, width=16))
    assert 250_000 < teacher < 300_000 and teacher > 10 * student  # He et al.: ResNet-20 ≈ 0.27M
    n_convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in build_model("resnet", spec, depth=20).modules())
    assert n_convs == 19  # 6n + 1 conv layers + the head = depth 20


def test_mobilenet_width_multiplier() -> None:
    spec = SPECS["cifar"]
    big = count_params(build_model("mobilenet", spec, width=1.0))
    small = count_params(build_model("mobilenet", spec, width=0.25))
    assert big > 10 * small
    assert any(m.groups > 1 for m in build_model("mobilenet", spec).modules() if isinstance(m, torch.nn.Conv2d))


def test_convnets_refuse_tables() -> None:
    table = InputSpec("table", (5,), ("a", "b"))
    for arch in ("resnet", "mobilenet"):
        with pytest.raises(ModelError, match="needs image data"):
            build_model(arch, table)


def test_describe_models_lists_every_model() -> None:
    rows = describe_models(SPECS["digits"])
    assert [r["name"] for r in rows] == MODELS.names()
    # Transformer teachers are not built for a listing: hf needs its folder, minilm text data.
    loaded = {"hf", "minilm"}
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in rows if r["name"] not in loaded)
    assert all(r["params"] is None and r["note"] for r in rows if r["name"] in loaded)
    table_rows = {r["name"]: r for r in describe_models(InputSpec("table", (5,), ("a", "b")))}
    assert table_rows["resnet"]["params"] is None and "image" in table_rows["resnet"]["note"]
    assert table_rows["mlp"]["params"] > 0
