"""Lazy image folders: bitwise equal to in-memory loading, worker processes, bad files, the CLI end to end."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from distilens.config import load_config
from distilens.data import iterate_batches, load_dataset
from distilens.data.imagefolder import load_imagefolder
from distilens.data.lazy import LazyImages
from distilens.data.normalise import fit_normalisation, image_moments, stats_from_moments
from distilens.errors import ConfigError, DataError
from test_cli import distilens
from test_cli_byod import FAST


def _folder(root: Path, n: int = 10, size: tuple[int, int] = (12, 10), classes: int = 3, seed: int = 0) -> Path:
    """``classes`` class folders of ``n`` RGB PNGs (W, H) = size with class-dependent bright squares."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
            a[2 * c : 2 * c + 4, 2 * c : 2 * c + 4] = 240
            Image.fromarray(a).save(root / f"c{c}" / f"{i}.png")
    return root


def _batches(split, seed: int, batch_size: int = 7) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return list(iterate_batches(split, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)))


def _assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for (x1, y1, i1), (x2, y2, i2) in zip(a, b):
        assert x1.dtype == x2.dtype == torch.float32
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("lazy") / "imgs")


def test_stats_from_moments_by_hand_and_against_float64() -> None:
    # Two 1-channel 1×2 images [0, 1] and [1, 1]: mean 3/4, unbiased var (9/16 + 3/16) / 3 = 1/4.
    imgs = [np.array([[[0.0, 1.0]]], np.float32), np.array([[[1.0, 1.0]]], np.float32)]
    mean, std = stats_from_moments((image_moments(i) for i in imgs), 2)
    assert mean.tolist() == [0.75] and std.tolist() == [0.5]
    x = torch.rand(37, 3, 9, 5, generator=torch.Generator().manual_seed(1))
    mean, std = stats_from_moments((image_moments(i.numpy()) for i in x), 45)
    ref = x.double()
    assert torch.allclose(mean.double(), ref.mean(dim=(0, 2, 3)), atol=1e-7, rtol=0)
    assert torch.allclose(std.double(), ref.std(dim=(0, 2, 3)), atol=1e-7, rtol=0)
    old_mean, old_std = fit_normalisation(x, "image")  # the float32 statistics used before
    assert torch.allclose(mean, old_mean, atol=1e-6) and torch.allclose(std, old_std, atol=1e-6)


def test_lazy_equals_in_memory_bitwise(folder: Path) -> None:
    mem = load_imagefolder(folder, lazy=False, seed=3)
    lazy = load_imagefolder(folder, lazy=True, num_workers=0, seed=3)
    assert lazy.spec == mem.spec  # the same exact statistics, bit for bit
    assert lazy.train.lazy and not mem.train.lazy
    assert lazy.loading() == {"loading": "lazy", "num_workers": 0} and mem.loading() == {"loading": "memory"}
    for name in ("train", "val", "test"):
        m, lz = getattr(mem, name), getattr(lazy, name)
        assert isinstance(lz.inputs, LazyImages) and lz.inputs.shape == m.inputs.shape
        assert torch.equal(lz.targets, m.targets)
        assert torch.equal(lz.inputs[:], m.inputs)
        _assert_same_batches(_batches(lz, seed=5), _batches(m, seed=5))
    # the statistics are those of the training images, to float32 precision
    raw = load_imagefolder(folder, lazy=False, seed=3).train.inputs * torch.tensor(mem.spec.std).view(1, -1, 1, 1)
    raw = raw + torch.tensor(mem.spec.mean).view(1, -1, 1, 1)
    assert torch.allclose(torch.tensor(mem.spec.mean), raw.double().mean(dim=(0, 2, 3)).float(), atol=1e-6)
    assert torch.allclose(torch.tensor(mem.spec.std), raw.double().std(dim=(0, 2, 3)).float(), atol=1e-6)


def test_given_splits_lazy_equals_in_memory(tmp_path: Path) -> None:
    _folder(tmp_path / "train", n=8, seed=1)
    _folder(tmp_path / "test", n=3, seed=2)
    mem = load_imagefolder(tmp_path, lazy=False)
    lazy = load_imagefolder(tmp_path, lazy=True, num_workers=0)
    assert lazy.spec == mem.spec and lazy.sizes() == mem.sizes() == {"n_train": 21, "n_val": 3, "n_test": 9}
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(lazy, name).inputs[:], getattr(mem, name).inputs)


def test_indexing_like_a_tensor(folder: Path) -> None:
    mem = load_imagefolder(folder, lazy=False)
    x, ref = load_imagefolder(folder, lazy=True, num_workers=0).train.inputs, mem.train.inputs
    n = len(x)
    assert len(x) == ref.shape[0] and x.dtype == torch.float32 and x.dim() == 4
    assert torch.equal(x[0], ref[0]) and torch.equal(x[-1], ref[-1]) and torch.equal(x[np.int64(2)], ref[2])
    assert x[torch.tensor(2)].shape == ref[2].shape == x[2].shape
    assert torch.equal(x[1:8:3], ref[1:8:3]) and torch.equal(x[[4, 0, 4]], ref[[4, 0, 4]])
    mask = torch.arange(n) % 2 == 0
    assert torch.equal(x[mask], ref[mask])
    assert torch.equal(x.subset(torch.tensor([5, 1]))[:], ref[torch.tensor([5, 1])])
    with pytest.raises(IndexError, match="out of range"):
        x[n]


def test_workers_give_the_same_batches_as_in_process(folder: Path) -> None:
    zero = load_imagefolder(folder, lazy=True, num_workers=0)
    two = load_imagefolder(folder, lazy=True, num_workers=2)
    assert zero.spec == two.spec
    for epoch_seed in (0, 1):  # the second epoch reuses the persistent workers with a new order
        _assert_same_batches(_batches(two.train, epoch_seed), _batches(zero.train, epoch_seed))
    # a nested read of the same split (while the persistent workers are busy) gets its own workers
    outer = iterate_batches(two.train, 9)
    first = next(outer)
    _assert_same_batches(list(iterate_batches(two.train, 4)), list(iterate_batches(zero.train, 4)))
    _assert_same_batches([first, *outer], list(iterate_batches(zero.train, 9)))
    abandoned = iterate_batches(two.train, 5, shuffle=True, generator=torch.Generator().manual_seed(7))
    next(abandoned)
    del abandoned  # workers still hold prefetched batches of that epoch: the next one must not see them
    _assert_same_batches(_batches(two.train, 8), _batches(zero.train, 8))


def test_auto_chooses_by_memory_budget(folder: Path) -> None:
    need = 30 * 3 * 10 * 12 * 4
    assert not load_imagefolder(folder, max_bytes=need).train.lazy
    assert load_imagefolder(folder, max_bytes=need - 1, num_workers=0).train.lazy
    assert load_dataset(f"imagefolder:{folder}", max_bytes=need - 1, num_workers=0).train.lazy
    with pytest.raises(DataError, match=r"GB in memory.*data.lazy: auto"):
        load_imagefolder(folder, max_bytes=need - 1, lazy=False)
    with pytest.raises(DataError, match="data.lazy must be auto, true or false"):
        load_imagefolder(folder, lazy="sometimes")  # type: ignore[arg-type]
    assert load_config(None, overrides=["data.lazy=true"]).data.lazy is True
    assert load_config(None).data.lazy == "auto" and load_config(None).data.num_workers is None
    with pytest.raises(ConfigError, match="data.lazy': must be auto, true or false"):
        load_config(None, overrides=["data.lazy=sometimes"])


def test_fingerprint_follows_files_and_preprocessing(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", n=4, classes=2)
    a = load_imagefolder(root, lazy=True, num_workers=0, val_fraction=0.25, test_fraction=0.25)
    b = load_imagefolder(root, lazy=True, num_workers=0, val_fraction=0.25, test_fraction=0.25)
    assert a.train.fingerprint() == b.train.fingerprint() != a.test.fingerprint()
    c = load_imagefolder(root, lazy=True, num_workers=0, image_size=(6, 6), val_fraction=0.25, test_fraction=0.25)
    assert c.train.fingerprint() != a.train.fingerprint()
    f = a.train.inputs.files[0]
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    d = load_imagefolder(root, lazy=True, num_workers=0, val_fraction=0.25, test_fraction=0.25)
    assert d.train.fingerprint() != a.train.fingerprint()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_file_found_before_training(tmp_path: Path, workers: int) -> None:
    root = _folder(tmp_path / "f", n=10)
    Image.fromarray(np.full((10, 12, 3), 99, np.uint8)).save(root / "c1" / "bad.jpg", quality=95)
    _truncate(root / "c1" / "bad.jpg")  # passes Pillow's structural check; fails on decode
    with pytest.raises(DataError, match=r"bad\.jpg' is not a readable image.*skip_bad_files"):
        load_imagefolder(root, lazy=True, num_workers=workers)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable.*bad\.jpg"):
        lazy = load_imagefolder(root, lazy=True, num_workers=workers, skip_bad_files=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = load_imagefolder(root, lazy=False, skip_bad_files=True)
    assert lazy.spec == mem.spec and len(lazy.train) + len(lazy.val) + len(lazy.test) == 30
    assert torch.equal(lazy.train.inputs[:], mem.train.inputs)


@pytest.mark.parametrize("workers", [0, 1])
def test_file_broken_after_loading_names_it(tmp_path: Path, workers: int) -> None:
    lazy = load_imagefolder(_folder(tmp_path / "f", n=10), lazy=True, num_workers=workers)
    victim = Path(lazy.train.inputs.files[3])
    _truncate(victim)
    with pytest.raises(DataError, match=f"'{victim}' could not be read") as info:
        list(iterate_batches(lazy.train, 4))
    assert "\n" not in str(info.value)


def _metrics_without_timing(m: dict) -> dict:
    drop = {"timing_s", "environment", "latency_ms", "latency_iqr_ms", "latency", "seconds"}  # clocks and the machine's load

    def clean(v):
        return {k: clean(x) for k, x in v.items() if k not in drop} if isinstance(v, dict) else v

    out = clean(m)
    for k in ("loading", "num_workers"):
        out["dataset"].pop(k, None)
    out.pop("compression", None)  # holds latency-based speed-ups
    out.get("simple_models", {}).pop("linear", None)  # not fitted on lazily read images (checked in the test)
    return out


@pytest.mark.slow  # two full CLI runs (~55 s); CI runs it
def test_cli_run_lazy_matches_in_memory_and_predicts(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", n=12, size=(8, 8))
    common = ["--set", "data.source=imagefolder:imgs", "--set", "teacher.args.width=4", "--set", "student.args.width=2",
              "--set", "teacher.train.epochs=2", "--set", "distill.epochs=2", "--set", "distill.baseline=false", *FAST,
              "--set", "explain.methods=[gradcam]", "--set", "explain.sanity=false"]
    runs = {}
    for name, lazy in (("mem", "false"), ("lazy", "true")):
        proc = distilens("run", "--out", f"runs/{name}", "--set", f"data.lazy={lazy}", "--set", "data.num_workers=1",
                         *common, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())
    assert runs["lazy"]["dataset"]["loading"] == "lazy" and runs["lazy"]["dataset"]["num_workers"] == 1
    assert runs["mem"]["dataset"]["loading"] == "memory"
    assert runs["lazy"]["simple_models"]["linear"] == {"skipped": "the images are read lazily from the files"}
    assert _metrics_without_timing(runs["lazy"]) == _metrics_without_timing(runs["mem"])
    p_mem, p_lazy = (load_file(tmp_path / "runs" / n / "predictions.safetensors") for n in ("mem", "lazy"))
    assert p_mem.keys() == p_lazy.keys() and all(torch.equal(p_mem[k], p_lazy[k]) for k in p_mem)
    out = {}
    for name in ("mem", "lazy"):
        proc = distilens("predict", f"runs/{name}", "imgs/c2", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out[name] = proc.stdout
    assert out["lazy"] == out["mem"] and len(out["lazy"].strip().splitlines()) == 13
