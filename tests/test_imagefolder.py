"""Image folders: layouts, modes and sizes, bad files, error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distilens.data import load_dataset
from distilens.data.image_io import read_image
from distilens.data.imagefolder import load_imagefolder
from distilens.errors import DataError


def _img(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), value: int = 0, fmt: str | None = None) -> Path:
    """Write a (W, H) = size image whose pixels vary with ``value`` (so classes differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = (rng.random((size[1], size[0], 3)) * 100 + value).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def _folder(root: Path, classes: dict[str, int], n: int = 6, mode: str = "RGB", ext: str = ".png") -> Path:
    for c, (name, value) in enumerate(classes.items()):
        for i in range(n):
            _img(root / name / f"{i}{ext}", mode, value=value + i)
    return root


def test_one_folder_per_class_loads_and_splits(tmp_path: Path) -> None:
    root = _folder(tmp_path / "pets", {"cat": 10, "dog": 120}, n=10)
    (root / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (root / "dog" / "notes.txt").write_text("not an image")
    b = load_dataset(f"imagefolder:{root}", seed=0, val_fraction=0.2, test_fraction=0.2)
    assert b.spec.kind == "image" and b.spec.shape == (3, 8, 8)
    assert b.spec.class_names == ("cat", "dog")
    assert len(b.train) + len(b.val) + len(b.test) == 20
    # normalised with training statistics: per-channel mean ≈ 0, std ≈ 1 on train
    assert torch.allclose(b.train.inputs.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    again = load_dataset(f"imagefolder:{root}", seed=0, val_fraction=0.2, test_fraction=0.2)
    assert torch.equal(b.test.inputs, again.test.inputs)  # seeded


def test_mixed_modes_sizes_and_names(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for i, (mode, size) in enumerate([("L", (8, 8)), ("RGB", (10, 6)), ("RGBA", (8, 8)), ("P", (12, 12))] * 2):
        _img(root / "klasse ä" / f"bild {i} é.png", mode, size, value=i)
        _img(root / "zwei" / f"{i}.png", mode, size, value=100 + i)
    with pytest.raises(DataError, match=r"different sizes.*data.image_size"):
        load_imagefolder(root)
    b = load_imagefolder(root, image_size=(4, 5), val_fraction=0.25, test_fraction=0.25)
    assert b.spec.shape == (3, 4, 5)  # not all grayscale -> RGB
    assert b.spec.class_names == ("klasse ä", "zwei")
    b1 = load_imagefolder(root, image_size=(4, 5), channels=1, val_fraction=0.25, test_fraction=0.25)
    assert b1.spec.shape == (1, 4, 5)


def test_grayscale_default_and_formats(tmp_path: Path) -> None:
    root = tmp_path / "gray"
    for i, ext in enumerate([".png", ".jpg", ".bmp", ".tiff", ".JPEG"]):
        _img(root / "a" / f"{i}{ext}", "L", value=i)
        _img(root / "b" / f"{i}{ext}", "L", value=150 + i)
    b = load_imagefolder(root, val_fraction=0.2, test_fraction=0.2)
    assert b.spec.shape == (1, 8, 8)
    assert len(b.train) + len(b.val) + len(b.test) == 10
    for c in "ab":  # WebP stores RGB: one colour image makes the default 3 channels
        _img(root / c / "w.webp", "RGB", value=9)
    assert load_imagefolder(root, val_fraction=0.2, test_fraction=0.2).spec.shape == (3, 8, 8)


def test_read_image_matches_pixels(tmp_path: Path) -> None:
    p = _img(tmp_path / "x.png", "RGB", (5, 4), value=7)
    arr = read_image(p, 3, (4, 5))
    expected = np.asarray(Image.open(p), dtype=np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(arr, expected)  # same size: no resampling


def test_given_splits_are_used(tmp_path: Path) -> None:
    root = tmp_path / "given"
    _folder(root / "train", {"a": 0, "b": 150}, n=10)
    _folder(root / "test", {"a": 5, "b": 160}, n=3)
    b = load_imagefolder(root, seed=1, val_fraction=0.1, test_fraction=0.2)
    assert len(b.test) == 6
    assert len(b.train) + len(b.val) == 20 and len(b.val) >= 2
    assert torch.allclose(b.train.inputs.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    _folder(root / "val", {"a": 3, "b": 140}, n=2)
    b2 = load_imagefolder(root)
    assert (len(b2.train), len(b2.val), len(b2.test)) == (20, 4, 6)


def test_given_splits_unknown_test_class(tmp_path: Path) -> None:
    root = tmp_path / "given"
    _folder(root / "train", {"a": 0, "b": 150}, n=4)
    _folder(root / "test", {"a": 5, "c": 160}, n=2)
    with pytest.raises(DataError, match=r"class folder 'c'"):
        load_imagefolder(root)


def _bad_files(root: Path) -> tuple[Path, Path]:
    _folder(root, {"a": 0, "b": 150}, n=8)
    fake = root / "a" / "fake.png"
    fake.write_text("this is text, renamed .png")
    good = _img(root / "b" / "big.png", "RGB", (8, 8), value=3)
    truncated = root / "b" / "cut short.png"
    truncated.write_bytes(good.read_bytes()[:60])
    good.unlink()
    return fake, truncated


def test_bad_files_raise_naming_the_file(tmp_path: Path) -> None:
    fake, _ = _bad_files(tmp_path / "bad")
    with pytest.raises(DataError, match=r"fake\.png.*skip_bad_files") as err:
        load_imagefolder(tmp_path / "bad")
    assert "\n" not in str(err.value)


def test_truncated_jpeg_is_caught_on_decode(tmp_path: Path) -> None:
    root = tmp_path / "jpg"
    _folder(root, {"a": 0, "b": 150}, n=5)
    full = _img(root / "a" / "full.jpg", "RGB", (64, 64), value=1)
    (root / "a" / "half.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"half\.jpg"):
        load_imagefolder(root, image_size=(8, 8))


def test_skip_bad_files_warns_and_goes_on(tmp_path: Path) -> None:
    fake, truncated = _bad_files(tmp_path / "bad")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable") as rec:
        b = load_imagefolder(tmp_path / "bad", skip_bad_files=True, val_fraction=0.25, test_fraction=0.25)
    msg = str(rec[0].message)
    assert "fake.png" in msg and "cut short.png" in msg
    assert len(b.train) + len(b.val) + len(b.test) == 16


@pytest.mark.parametrize(
    "layout, pattern",
    [
        ({}, r"no class sub-folders"),
        ({"only": 3}, r"only one class"),
        ({"a": 3, "empty": 0}, r"'.*empty' has no images"),
    ],
)
def test_folder_errors(tmp_path: Path, layout: dict[str, int], pattern: str) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for name, n in layout.items():
        (root / name).mkdir()
        for i in range(n):
            _img(root / name / f"{i}.png")
    with pytest.raises(DataError, match=pattern):
        load_imagefolder(root)


def test_missing_folder_and_memory_budget(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    root = _folder(tmp_path / "f", {"a": 0, "b": 150}, n=4)
    with pytest.raises(DataError, match=r"GB in memory.*data.lazy: auto.*image_size"):
        load_imagefolder(root, max_bytes=1000, lazy=False)
