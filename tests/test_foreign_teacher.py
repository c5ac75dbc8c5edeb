"""Teachers from elsewhere: safetensors, state dicts, TorchScript, import paths; pickles refused."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from distilens.data import InputSpec
from distilens.errors import ModelError
from distilens.models import build_model, load_teacher, save_model

SPEC = InputSpec("image", (1, 8, 8), tuple("0123456789"))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = torch.randn(4, *SPEC.shape)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=1e-6)


def test_safetensors_with_zoo_arch_and_with_distilens_json(tmp_path: Path) -> None:
    model = build_model("resnet", SPEC, depth=8, width=4).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    _same(load_teacher(tmp_path / "w.safetensors", arch="resnet", args={"depth": 8, "width": 4}, spec=SPEC), model)
    with pytest.raises(ModelError, match=r"do not fit teacher.arch 'resnet'.*Missing key|size mismatch"):
        load_teacher(tmp_path / "w.safetensors", arch="resnet", args={"depth": 8, "width": 8}, spec=SPEC)
    saved = save_model(model, tmp_path / "d" / "t.safetensors", arch="resnet", args={"depth": 8, "width": 4}, spec=SPEC)
    _same(load_teacher(saved, arch="cnn", args={}, spec=SPEC), model)  # the .json names the arch


def test_plain_state_dict_and_checkpoint_wrapper(tmp_path: Path) -> None:
    model = build_model("cnn", SPEC, width=4).eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("sd.pt", "ckpt.pth"):
        _same(load_teacher(tmp_path / name, arch="cnn", args={"width": 4}, spec=SPEC), model)


def test_torchscript_needs_trust(tmp_path: Path) -> None:
    model = build_model("cnn", SPEC, width=4).eval()
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, *SPEC.shape)), str(tmp_path / "ts.pt"))
    with pytest.raises(ModelError, match=r"TorchScript.*teacher.trust_torchscript: true"):
        load_teacher(tmp_path / "ts.pt", arch="cnn", args={}, spec=SPEC)
    _same(load_teacher(tmp_path / "ts.pt", arch=None, args=None, spec=SPEC, trust_torchscript=True), model)


class _Plant:
    """Unpickling this creates ``path``: the test checks that it never happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_is_refused_and_runs_no_code(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"weight": _Plant(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps(_Plant(str(marker))))
    with pytest.raises(ModelError, match=r"pickled Python objects.*torch.save\(model.state_dict\(\)"):
        load_teacher(path, arch="cnn", args={}, spec=SPEC)
    assert not marker.exists()


def test_whole_module_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save(build_model("cnn", SPEC, width=4), tmp_path / "model.pt")
    with pytest.raises(ModelError, match=r"whole module saved with torch.save\(model\).*safetensors"):
        load_teacher(tmp_path / "model.pt", arch="cnn", args={}, spec=SPEC)


def test_import_path_factory_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "lib" / "myteachers"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        def make(hidden=16, classes=10):
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.delitem(sys.modules, "myteachers", raising=False)
    from myteachers.nets import make  # type: ignore[import-not-found]

    model = make(hidden=12)
    torch.nn.init.normal_(model[1].weight)  # differ from a fresh build
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = load_teacher(tmp_path / "w.safetensors", arch="import:myteachers.nets:make", args={"hidden": 12}, spec=SPEC)
    _same(loaded, model)
    five = make(hidden=12, classes=5)
    save_file({k: v.contiguous() for k, v in five.state_dict().items()}, tmp_path / "w5.safetensors")
    with pytest.raises(ModelError, match=r"teacher predicts 5 classes, the data has 10"):
        load_teacher(tmp_path / "w5.safetensors", arch="import:myteachers.nets:make", args={"hidden": 12, "classes": 5}, spec=SPEC)
    with pytest.raises(ModelError, match=r"cannot import 'myteachers.nope'"):
        load_teacher(tmp_path / "w.safetensors", arch="import:myteachers.nope:make", args={}, spec=SPEC)
    with pytest.raises(ModelError, match=r"has no attribute 'missing'"):
        load_teacher(tmp_path / "w.safetensors", arch="import:myteachers.nets:missing", args={}, spec=SPEC)
    with pytest.raises(ModelError, match=r"cannot be called with teacher.args"):
        load_teacher(tmp_path / "w.safetensors", arch="import:myteachers.nets:make", args={"bogus": 1}, spec=SPEC)


def test_shape_and_class_checks(tmp_path: Path) -> None:
    other = InputSpec("image", (3, 8, 8), tuple("0123456789"))
    torch.save(build_model("cnn", SPEC, width=4).state_dict(), tmp_path / "c.pt")
    with pytest.raises(ModelError, match=r"teacher cannot take inputs of shape \(3, 8, 8\): .*channels"):
        load_teacher(tmp_path / "c.pt", arch="import:distilens.models.zoo:CNN", args={"in_channels": 1, "num_classes": 10, "width": 4}, spec=other)
    with pytest.raises(ModelError, match=r"does not exist"):
        load_teacher(tmp_path / "none.pt", arch="cnn", args={}, spec=SPEC)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(ModelError, match=r"junk\.pt"):
        load_teacher(tmp_path / "junk.pt", arch="cnn", args={}, spec=SPEC)
