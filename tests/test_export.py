"""Export: TorchScript and ONNX outputs match PyTorch; dynamic batch; int8 report; atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distilens.data import InputSpec
from distilens.errors import ConfigError, ModelError
from distilens.export import export_model
from distilens.models import build_model

SPEC = InputSpec("image", (1, 8, 8), tuple("0123456789"))
TABLE = InputSpec("table", (6,), ("a", "b", "c"))


def _inputs(spec: InputSpec, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *spec.shape, generator=g), torch.randint(0, spec.num_classes, (n,), generator=g)


def _trained_mlp(n: int = 64) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP fitted to a learnable rule, so its decisions have margins that int8 should keep.

    (An untrained network's logits are nearly tied, and the int8/float agreement on it is a
    coin toss that changes with the onnxruntime release.)
    """
    torch.manual_seed(0)
    model = build_model("mlp", TABLE, hidden=[256, 256])
    x, _ = _inputs(TABLE, n)
    y = (x[:, :3] @ torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]])).argmax(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@pytest.mark.parametrize("arch, spec", [("resnet", SPEC), ("mobilenet", SPEC), ("mlp", TABLE)])
def test_torchscript_matches_pytorch(tmp_path: Path, arch: str, spec: InputSpec) -> None:
    model = build_model(arch, spec).eval()
    x, _ = _inputs(spec)
    info = export_model(model, spec, tmp_path / "m.ts", "torchscript", check_inputs=x)
    assert info["max_abs_diff"] < 1e-5 and info["batch_sizes_checked"] == [5, 1]
    assert (tmp_path / "m.ts").is_file() and info["size_bytes"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.ts"]  # no temporary left behind


def test_torchscript_int8_reports_size_and_accuracy(tmp_path: Path) -> None:
    model, x, y = _trained_mlp()
    info = export_model(model, TABLE, tmp_path / "q.ts", "torchscript", quantize="int8", check_inputs=x, check_targets=y)
    q = info["quantization"]
    assert q["quantized_layers"] == ["features.1", "features.3", "head"]
    assert q["size_bytes_int8"] < q["size_bytes_float"] / 2
    assert q["accuracy_change"] is not None and abs(q["accuracy_change"]) <= 0.1
    assert q["agreement"] > 0.9 and info["max_abs_diff"] < 1e-4  # file vs the eager int8 model
    conv = export_model(build_model("cnn", SPEC, width=4).eval(), SPEC, tmp_path / "c.ts", "torchscript", quantize="int8")
    assert "convolution(s) stay float32" in conv["quantization"]["note"]


def test_options_are_checked(tmp_path: Path) -> None:
    model = build_model("mlp", TABLE)
    with pytest.raises(ConfigError, match="export format 'tflite'"):
        export_model(model, TABLE, tmp_path / "m", "tflite")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="quantize 'int4'"):
        export_model(model, TABLE, tmp_path / "m", "torchscript", quantize="int4")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"shape \(3,\)"):
        export_model(model, TABLE, tmp_path / "m", "torchscript", check_inputs=torch.zeros(2, 3))


def test_onnx_without_onnx_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(ModelError, match=r"pip install 'distilens\[onnx\]'"):
        export_model(build_model("mlp", TABLE), TABLE, tmp_path / "m.onnx", "onnx")


@pytest.mark.parametrize("arch, spec", [("resnet", SPEC), ("mlp", TABLE)])
def test_onnx_matches_pytorch(tmp_path: Path, arch: str, spec: InputSpec) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = build_model(arch, spec).eval()
    x, _ = _inputs(spec)
    info = export_model(model, spec, tmp_path / "m.onnx", "onnx", check_inputs=x)
    assert info["checked_with"] == "onnxruntime"
    assert info["max_abs_diff"] < 1e-4 and info["batch_sizes_checked"] == [5, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_onnx_int8(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, x, y = _trained_mlp()
    info = export_model(model, TABLE, tmp_path / "q.onnx", "onnx", quantize="int8", check_inputs=x, check_targets=y)
    q = info["quantization"]
    assert q["size_bytes_int8"] < q["size_bytes_float"] / 2
    assert q["agreement"] > 0.9 and q["accuracy_int8"] is not None


def test_onnx_legacy_exporter_without_onnxscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    x, _ = _inputs(SPEC)
    info = export_model(build_model("cnn", SPEC, width=4).eval(), SPEC, tmp_path / "m.onnx", "onnx", check_inputs=x)
    assert "legacy" in info["exporter"] and info["max_abs_diff"] < 1e-4
