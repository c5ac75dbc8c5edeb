"""Image folders: one sub-folder per class, or train/ and test/ (and val/) folders of classes.

Layouts::

    root/cat/001.png  root/dog/a b.jpg            # one folder per class: split by seed
    root/train/cat/…  root/test/cat/…  [root/val/cat/…]   # given splits

Images are decoded by :func:`~distilens.data.image_io.read_image` (the one decoding rule,
shared with the lazy reader and with prediction) and held in memory as float32 — or, for
folders over the memory budget (or with ``lazy=True``), read batch by batch from their
files by worker processes (:mod:`distilens.data.lazy`). Hidden files and folders (names
starting with ".") and files with other extensions are ignored.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from ..errors import DataError
from .bundle import DataBundle, InputSpec, LazyInputs, Split
from .image_io import GRAY_MODES, IMAGE_ERRORS, IMAGE_EXTENSIONS, ImagePreprocessor, list_images, probe_image, read_image, unreadable_image
from .lazy import lazy_splits
from .normalise import apply_normalisation, image_moments, stats_from_moments
from .split import SPLIT_NAMES, SplitInfo, split_indices, split_validation

__all__ = ["load_imagefolder", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 2 * 1024**3  # in-memory budget for the float32 tensors of all images
_Loaded = dict[str, tuple[torch.Tensor | LazyInputs, torch.Tensor]]  # split -> (images, labels)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


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
                    probes.append(probe_image(p))
                except IMAGE_ERRORS as exc:
                    if not skip_bad_files:
                        raise unreadable_image(p, exc) from None
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
        channels = 1 if all(mode in GRAY_MODES for _, _, mode in probes) else 3
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
        except IMAGE_ERRORS as exc:
            if not skip_bad_files:
                raise unreadable_image(p, exc) from None
            bad.append(str(p))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s): {', '.join(bad)}", stacklevel=3)
    y = np.array([items[i][1] for i in keep], dtype=np.int64)
    return torch.from_numpy(x[keep] if bad else x), torch.from_numpy(y)


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
            ``val/``, validation is ``val_fraction`` of ``train/`` (stratified, seeded).
        seed: Seeds the split.
        val_fraction: Fraction of all samples for validation (one-folder layout), or of
            ``train/`` (given splits without val/).
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
    if given and names - set(SPLIT_NAMES):
        extra = sorted(names - set(SPLIT_NAMES))
        raise DataError(f"'{root}' mixes split folders (train/, test/) with other folders ({', '.join(extra)}); use one layout")
    folders = {s: root / s for s in SPLIT_NAMES if s in names} if given else {"all": root}
    files, class_names, probes = _scan(folders, skip_bad_files)
    all_files = [p for items in files.values() for p, _ in items]
    channels, size = _resolve_shape(probes, all_files, image_size, channels)
    need = len(all_files) * channels * size[0] * size[1] * 4
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loaded: _Loaded
    if _use_lazy(lazy, need, DEFAULT_MAX_BYTES if max_bytes is None else max_bytes, root, size, channels):
        loaded, moments = lazy_splits(files, channels, size, skip_bad_files, num_workers)
    else:
        loaded = {s: _read_all(items, channels, size, skip_bad_files) for s, items in files.items()}
    name = root.resolve().name
    loaded, info = _split(loaded, name, root, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    train_x = loaded["train"][0]
    if isinstance(train_x, LazyInputs):  # moments from the up-front decode: no second pass
        per_image = (moments[f] for f in train_x.files)  # type: ignore[attr-defined]
    else:
        per_image = (image_moments(img.numpy()) for img in train_x)
    mean, std = stats_from_moments(per_image, size[0] * size[1])
    splits = {s: Split(_normalised(x, mean, std), y) for s, (x, y) in loaded.items()}
    spec = InputSpec("image", (channels, *size), class_names, None, tuple(mean.tolist()), tuple(std.tolist()))
    pre = ImagePreprocessor(channels, size, spec.mean, spec.std)
    return DataBundle(name, splits["train"], splits["val"], splits["test"], spec, preprocessing=pre, split_info=info)


def _split(
    loaded: _Loaded, name: str, root: Path, *, seed: int, val_fraction: float, test_fraction: float
) -> tuple[_Loaded, SplitInfo]:
    """Train/val/test images and labels: split by seed ("all"), or given, with val carved from train when absent."""
    if "all" in loaded:
        x, y = loaded["all"]
        parts = split_indices(y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, name=name)
        info = SplitInfo("seeded", "seeded", seed, val_fraction=val_fraction, test_fraction=test_fraction)
        return {s: (_take(x, i), y[i]) for s, i in parts.items()}, info
    if "val" in loaded:
        return loaded, SplitInfo("folder", "given", seed)
    x, y = loaded["train"]
    tr, va = split_validation(
        y, seed=seed, val_fraction=val_fraction, name=str(root / "train"), fix="add images or add a val/ folder",
    )
    info = SplitInfo("folder", "carved", seed, val_fraction=val_fraction)
    return {**loaded, "train": (_take(x, tr), y[tr]), "val": (_take(x, va), y[va])}, info


def _take(x: torch.Tensor | LazyInputs, index: torch.Tensor) -> torch.Tensor | LazyInputs:
    return x.subset(index) if isinstance(x, LazyInputs) else x[index]


def _normalised(x: torch.Tensor | LazyInputs, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor | LazyInputs:
    if isinstance(x, LazyInputs):
        return x.normalised(mean, std)  # type: ignore[attr-defined]
    return apply_normalisation(x, mean, std, "image").contiguous()
