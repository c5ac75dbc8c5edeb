"""Image folders: one sub-folder per class, or train/ and test/ (and val/) folders of classes.

Layouts::

    root/cat/001.png  root/dog/a b.jpg            # one folder per class: split by seed
    root/train/cat/…  root/test/cat/…  [root/val/cat/…]   # given splits

Images are read with Pillow (PNG, JPEG, BMP, WebP, TIFF), converted to ``channels``
(1 = grayscale, 3 = RGB; an alpha channel is dropped), resized to ``image_size`` with
bilinear filtering, scaled to [0, 1] and held in memory as float32 — or, for folders over
the memory budget (or with ``lazy=True``), read batch by batch from their files by worker
processes (:mod:`distilens.data.lazy`). Hidden files and
folders (names starting with ".") and files with other extensions are ignored.
:func:`read_image` is the one place that turns a file into an array, so prediction
applies exactly the training preprocessing.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from ..errors import DataError
from ..limits import IMAGE_ERRORS, open_image
from .builtin import RawData
from .bundle import DataBundle, InputSpec, LazyInputs, Split
from .normalise import apply_normalisation, image_moments, stats_from_moments

__all__ = ["IMAGE_EXTENSIONS", "load_imagefolder", "read_image", "list_images", "DEFAULT_MAX_BYTES"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_MAX_BYTES = 2 * 1024**3  # in-memory budget for the float32 tensors of all images
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_SPLIT_NAMES = ("train", "val", "test")
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Errors Pillow raises on files that are not images, are truncated, or are too large.
_PIL_ERRORS = IMAGE_ERRORS  # one list for every reader (limits.py)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden entries and other extensions skipped."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and all(not part.startswith(".") for part in rel) and p.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(p)
    return found


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


def _probe(path: Path) -> tuple[int, int, str]:
    """(width, height, mode) of an image after Pillow's structural check; raises on a bad file."""
    with open_image(path) as img:
        img.verify()  # checks structure (e.g. PNG chunk CRCs) without decoding pixels
    with open_image(path) as img:
        return img.size[0], img.size[1], img.mode


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Decode one image into a (channels, H, W) float32 array in [0, 1].

    Args:
        path: An image file Pillow can read.
        channels: 1 (grayscale) or 3 (RGB); alpha is dropped, palettes are expanded.
        size: Target (H, W); resized with bilinear filtering when the image differs.

    Raises:
        OSError (or another Pillow error) on a file that is not an image or is truncated.

    Example:
        >>> read_image("cat.png", 3, (32, 32)).shape
        (3, 32, 32)
    """
    with open_image(path) as img:
        img.load()  # decodes fully: raises on truncated data
        if img.mode in _WIDE_MODES:
            # 16-bit integer and float images keep their precision: 16-bit scales to [0, 1],
            # float pixels are used as they are.
            scale = 1.0 if img.mode == "F" else 65535.0
            img = img.convert("F")
            if (img.size[1], img.size[0]) != tuple(size):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)[None] / scale
            return np.repeat(arr, 3, axis=0) if channels == 3 else arr
        if img.mode == "P" or img.mode == "PA":
            img = img.convert("RGBA")  # palettes (with transparency) expand losslessly first
        img = img.convert("L" if channels == 1 else "RGB")
        if (img.size[1], img.size[0]) != tuple(size):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _scan(
    folders: dict[str, Path], skip_bad_files: bool
) -> tuple[dict[str, list[tuple[Path, int]]], tuple[str, ...], list[tuple[int, int, str]]]:
    """Files and labels per split; class names from train (or the only folder)."""
    first = folders["train"] if "train" in folders else folders["all"]
    class_names = tuple(p.name for p in _class_dirs(first))
    if not class_names:
        raise DataError(f"image folder '{first}' has no class sub-folders; put each class's images in its own folder")
    if len(class_names) < 2:
        raise DataError(f"image folder '{first}' has only one class ('{class_names[0]}'); a classifier needs two or more")
    files: dict[str, list[tuple[Path, int]]] = {}
    probes: list[tuple[int, int, str]] = []
    bad: list[str] = []
    for split, folder in folders.items():
        dirs = _class_dirs(folder)
        unknown = [d.name for d in dirs if d.name not in class_names]
        if unknown:
            raise DataError(f"'{folder}' has class folder '{unknown[0]}' that '{first}' lacks; every class needs training images")
        files[split] = []
        for d in dirs:
            label = class_names.index(d.name)
            good = 0
            for p in list_images(d):
                try:
                    probes.append(_probe(p))
                except _PIL_ERRORS as exc:
                    if not skip_bad_files:
                        raise _unreadable(p, exc) from None
                    bad.append(str(p))
                    continue
                files[split].append((p, label))
                good += 1
            if good == 0:
                raise DataError(f"class folder '{d}' has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s): {', '.join(bad)}", stacklevel=3)
    return files, class_names, probes


def _resolve_shape(
    probes: list[tuple[int, int, str]], files: list[Path], image_size: Sequence[int] | None, channels: int | None
) -> tuple[int, tuple[int, int]]:
    if channels is None:
        channels = 1 if all(mode in _GRAY_MODES for _, _, mode in probes) else 3
    if channels not in (1, 3):
        raise DataError(f"data.channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    if image_size is None:
        sizes = Counter((h, w) for w, h, _ in probes)
        if len(sizes) > 1:
            (a, _), (b, _) = sizes.most_common(2)
            raise DataError(
                f"images have different sizes ({a[0]}×{a[1]} and {b[0]}×{b[1]}, {len(sizes)} sizes in all); "
                "set data.image_size: [H, W] to resize them all"
            )
        image_size = next(iter(sizes))
    if len(image_size) != 2 or min(int(s) for s in image_size) < 1:
        raise DataError(f"data.image_size must be [H, W] with positive sizes, not {list(image_size)}")
    return channels, (int(image_size[0]), int(image_size[1]))


def _read_all(items: list[tuple[Path, int]], channels: int, size: tuple[int, int], skip_bad_files: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.empty((len(items), channels, *size), dtype=np.float32)
    keep, bad = [], []
    for i, (p, _) in enumerate(items):
        try:
            x[i] = read_image(p, channels, size)
            keep.append(i)
        except _PIL_ERRORS as exc:
            if not skip_bad_files:
                raise _unreadable(p, exc) from None
            bad.append(str(p))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s): {', '.join(bad)}", stacklevel=3)
    y = np.array([items[i][1] for i in keep], dtype=np.int64)
    return torch.from_numpy(x[keep] if bad else x), torch.from_numpy(y)


def _unreadable(path: Path | str, reason: object) -> DataError:
    return DataError(f"'{path}' is not a readable image ({reason}); remove it or set data.skip_bad_files: true")


def _use_lazy(lazy: bool | str, need: int, max_bytes: int, root: Path, size: tuple[int, int], channels: int) -> bool:
    """Whether to read lazily: ``"auto"`` when the float32 tensors would exceed ``max_bytes``."""
    if lazy not in (True, False, "auto"):
        raise DataError(f"data.lazy must be auto, true or false, not {lazy!r}")
    if lazy == "auto":
        return need > max_bytes
    if not lazy and need > max_bytes:
        raise DataError(
            f"'{root}' needs {need / 1e9:.1f} GB in memory at {size[0]}×{size[1]}×{channels} (budget {max_bytes / 1e9:.1f} GB); "
            "set data.lazy: auto to read it lazily, raise data.max_memory_bytes or lower data.image_size"
        )
    return bool(lazy)


def _split_index(name: str, y: torch.Tensor, class_names: tuple[str, ...], seed: int, val_fraction: float, test_fraction: float) -> dict[str, torch.Tensor]:
    """Sample indices of train/val/test: the package's seeded, stratified split (labels only)."""
    from . import split_dataset

    n = len(y)  # sample indices ride along as "masks" through the split
    parts = split_dataset(name, RawData(torch.zeros(n, 1), y, "table", class_names, masks=torch.arange(n)),
                          seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    return {s: getattr(parts, s).masks for s in _SPLIT_NAMES}


def load_imagefolder(
    root: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    skip_bad_files: bool = False,
    max_bytes: int | None = None,
    lazy: bool | Literal["auto"] = "auto",
    num_workers: int | None = None,
) -> DataBundle:
    """Load an image folder into normalised train/val/test splits, in memory or lazily.

    Args:
        root: A folder of class folders, or of ``train/`` and ``test/`` (optionally ``val/``)
            folders of class folders; then those splits are used as given and, without
            ``val/``, validation is split off ``train/`` (stratified, seeded, the share
            ``val_fraction / (1 - test_fraction)`` as for one folder).
        seed: Seeds the split.
        val_fraction: Fraction of all samples for validation (one-folder layout or no val/).
        test_fraction: Fraction of all samples for testing (one-folder layout only).
        image_size: (H, W) every image is resized to; required when sizes differ.
        channels: 1 or 3; default 1 when every image is grayscale, else 3.
        skip_bad_files: Warn about and skip unreadable files instead of raising.
        max_bytes: Memory budget for the float32 tensors of all images (default
            ``DEFAULT_MAX_BYTES``, 2 GiB); N × C × H × W × 4 bytes are needed.
        lazy: ``True``: keep file lists and decode batches when used
            (:class:`~distilens.data.lazy.LazyImages`); ``False``: decode everything into
            memory (an error over ``max_bytes``); ``"auto"``: lazy only over ``max_bytes``.
        num_workers: Processes that decode lazy batches (0: in this process; default
            :func:`~distilens.data.lazy.default_num_workers`). Unused in memory.

    Returns:
        A :class:`DataBundle` whose ``spec`` is (channels, H, W) with the exact per-channel
        mean/std of the training split (:func:`~distilens.data.normalise.stats_from_moments`);
        class names are the folder names, sorted. Lazy and in-memory loading of one folder
        give the same statistics and bitwise-equal inputs. Every file is decoded once
        here either way, so an unreadable file is reported before any training.

    Example:
        >>> bundle = load_imagefolder("pets/", image_size=(32, 32))
        >>> bundle.spec.shape
        (3, 32, 32)
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist or is not a folder; check data.source")
    names = {p.name for p in _class_dirs(root)}
    given = "train" in names and "test" in names
    if given and names - set(_SPLIT_NAMES):
        extra = sorted(names - set(_SPLIT_NAMES))
        raise DataError(f"'{root}' mixes split folders (train/, test/) with other folders ({', '.join(extra)}); use one layout")
    folders = {s: root / s for s in _SPLIT_NAMES if s in names} if given else {"all": root}
    files, class_names, probes = _scan(folders, skip_bad_files)
    all_files = [p for items in files.values() for p, _ in items]
    channels, size = _resolve_shape(probes, all_files, image_size, channels)
    need = len(all_files) * channels * size[0] * size[1] * 4
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loaded: dict[str, tuple[torch.Tensor | LazyInputs, torch.Tensor]]
    if _use_lazy(lazy, need, DEFAULT_MAX_BYTES if max_bytes is None else max_bytes, root, size, channels):
        from .lazy import lazy_splits

        loaded, moments = lazy_splits(files, channels, size, skip_bad_files, num_workers)
    else:
        loaded = {s: _read_all(items, channels, size, skip_bad_files) for s, items in files.items()}
    name = root.resolve().name
    if not given:
        x, y = loaded.pop("all")
        loaded = {s: (_take(x, i), y[i]) for s, i in _split_index(name, y, class_names, seed, val_fraction, test_fraction).items()}
    elif "val" not in loaded:
        x, y = loaded["train"]
        try:
            tr, va = train_test_split(
                np.arange(len(y)), test_size=val_fraction / (1.0 - test_fraction), stratify=y.numpy(), random_state=seed
            )
        except ValueError as exc:
            raise DataError(f"'{root / 'train'}' cannot give a stratified validation split ({exc}); add images or add a val/ folder") from None
        tr, va = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
        loaded["train"], loaded["val"] = (_take(x, tr), y[tr]), (_take(x, va), y[va])
    train_x = loaded["train"][0]
    if isinstance(train_x, LazyInputs):  # moments from the up-front decode: no second pass
        per_image = (moments[f] for f in train_x.files)  # type: ignore[attr-defined]
    else:
        per_image = (image_moments(img.numpy()) for img in train_x)
    mean, std = stats_from_moments(per_image, size[0] * size[1])
    splits = {s: Split(_normalised(x, mean, std), y) for s, (x, y) in loaded.items()}
    spec = InputSpec("image", (channels, *size), class_names, None, tuple(mean.tolist()), tuple(std.tolist()))
    return DataBundle(name, splits["train"], splits["val"], splits["test"], spec)


def _take(x: torch.Tensor | LazyInputs, index: torch.Tensor) -> torch.Tensor | LazyInputs:
    return x.subset(index) if isinstance(x, LazyInputs) else x[index]


def _normalised(x: torch.Tensor | LazyInputs, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor | LazyInputs:
    if isinstance(x, LazyInputs):
        return x.normalised(mean, std)  # type: ignore[attr-defined]
    return apply_normalisation(x, mean, std, "image").contiguous()
