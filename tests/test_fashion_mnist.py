"""builtin:fashion_mnist: a tiny generated copy (always), the missing-files message, the real files (when installed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from distilens.cli import main
from distilens.data import DATASETS, load_dataset
from distilens.data import fashion_mnist as fm
from distilens.errors import DataError

REAL = fm.FASHION_MNIST_DIR
HAVE_REAL = all((REAL / f"{stem}.gz").is_file() for stem in fm.FASHION_MNIST_FILES.values())


def _idx(array: np.ndarray) -> bytes:
    """A uint8 IDX file (type 0x08), big-endian uint32 sizes."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def make_copy(folder: Path, n_train: int = 100, n_test: int = 30, *, packed: bool = True, side: int = 28,
              label_max: int = 9) -> dict[str, np.ndarray]:
    """The four files with balanced labels and random pixels; returns what was written."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data[f"{split}_labels"] = rng.permutation(np.arange(n) % (label_max + 1)).astype(np.uint8)
        data[f"{split}_images"] = rng.integers(0, 256, size=(n, side, side)).astype(np.uint8)
        for what in ("images", "labels"):
            payload = _idx(data[f"{split}_{what}"])
            stem = fm.FASHION_MNIST_FILES[(split, what)]
            if packed:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / stem).write_bytes(payload)
    return data


def test_registered_and_listed() -> None:
    assert "fashion_mnist" in DATASETS
    assert "10 classes" in (DATASETS.get("fashion_mnist").__doc__ or "")


@pytest.mark.parametrize("packed", [True, False])
def test_a_copy_named_by_the_environment_variable(tmp_path: Path, monkeypatch, packed: bool) -> None:
    data = make_copy(tmp_path / "fm", packed=packed)
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "fm"))
    raw = DATASETS.get("fashion_mnist")(0)
    assert raw.inputs.shape == (130, 1, 28, 28) and raw.inputs.dtype == torch.float32
    assert raw.kind == "image" and raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"
    expected = np.concatenate([data["train_images"], data["test_images"]]).astype(np.float32) / 255.0
    assert torch.equal(raw.inputs[:, 0], torch.from_numpy(expected))
    assert raw.test_only.tolist() == [False] * 100 + [True] * 30

    bundle = load_dataset("builtin:fashion_mnist", seed=0)
    # the official test images, in file order, are the test split; train and val split the rest
    assert bundle.test.targets.tolist() == data["test_labels"].tolist()
    assert len(bundle.train) + len(bundle.val) == 100
    assert bundle.spec.shape == (1, 28, 28) and bundle.spec.num_classes == 10


def test_root_argument_wins_over_the_environment(tmp_path: Path, monkeypatch) -> None:
    make_copy(tmp_path / "given", n_train=20, n_test=10)
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "elsewhere"))
    assert fm.load_fashion_mnist(tmp_path / "given").inputs.shape[0] == 30


def test_missing_files_say_how_to_get_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(fm.FASHION_MNIST_ENV, raising=False)
    monkeypatch.setattr(fm, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError) as info:
        fm.load_fashion_mnist()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and fm.FASHION_MNIST_ENV in message
    assert "is not set" in message and "\n" not in message

    (tmp_path / "partial").mkdir()
    make_copy(tmp_path / "partial")
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "partial"))
    with pytest.raises(DataError, match=f"t10k-labels-idx1-ubyte.gz is not in .*partial \\(from {fm.FASHION_MNIST_ENV}\\)"):
        fm.load_fashion_mnist()


def test_missing_files_exit_2_with_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as info:
        main(["run", "--set", "data.source=builtin:fashion_mnist", "--quiet"])
    err = capfd.readouterr().err
    assert info.value.code == 2
    assert len(err.splitlines()) == 1 and "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: make_copy(f, side=27), r"expected uint8 images of shape \(N, 28, 28\), found uint8 \(100, 27, 27\)"),
        (lambda f: make_copy(f, label_max=10), r"label 10 is out of range"),
        (lambda f: (make_copy(f), (f / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(99, np.uint8))))),
         r"expected 100 uint8 labels \(one per image in train-images-idx3-ubyte.gz\), found uint8 \(99,\)"),
        (lambda f: (make_copy(f), (f / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")),
         r"t10k-images-idx3-ubyte.gz' is a damaged or truncated gzip"),
    ],
    ids=["27x27", "label-10", "count-mismatch", "damaged-gzip"],
)
def test_files_that_are_not_fashion_mnist(tmp_path: Path, damage, message: str) -> None:
    damage(tmp_path / "fm")
    with pytest.raises(DataError, match=message) as info:
        fm.load_fashion_mnist(tmp_path / "fm")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not HAVE_REAL, reason=f"Fashion-MNIST is not installed in {REAL} (apt-get install dataset-fashion-mnist)")
def test_the_real_files(monkeypatch) -> None:
    monkeypatch.delenv(fm.FASHION_MNIST_ENV, raising=False)
    raw = fm.load_fashion_mnist()
    assert raw.inputs.shape == (70_000, 1, 28, 28) and raw.inputs.dtype == torch.float32
    assert raw.targets.dtype == torch.int64 and int(raw.test_only.sum()) == 10_000
    train, test = raw.targets[~raw.test_only], raw.targets[raw.test_only]
    assert torch.bincount(train).tolist() == [6_000] * 10 and torch.bincount(test).tolist() == [1_000] * 10
    assert train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert raw.inputs.min() == 0.0 and raw.inputs.max() == 1.0
    # the training images' well-known pixel statistics (mean 0.2860, std 0.3530)
    x = raw.inputs[~raw.test_only]
    assert abs(float(x.mean()) - 0.2860) < 5e-4 and abs(float(x.std()) - 0.3530) < 5e-4
