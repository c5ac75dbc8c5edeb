"""Lazily loaded image splits: files are decoded batch by batch, in worker processes.

An image folder whose float32 tensors would not fit the memory budget is held as
:class:`LazyImages`: the file list and its preprocessing (channels, size, mean, std).
Indexing decodes those files with :func:`~distilens.data.image_io.read_image` and
normalises them with :func:`~distilens.data.normalise.apply_normalisation`, exactly as the
in-memory path does, so a lazy split and an in-memory split of the same files give
bitwise-equal inputs. :meth:`LazyImages.load_batches` streams batches in a given order
through a :class:`torch.utils.data.DataLoader` whose persistent worker processes decode
ahead of the training step; ``num_workers=0`` decodes in this process, with the same
batches.

:func:`decode_all` decodes every file once up front (in the workers), so an unreadable
file is reported before training, and returns each image's moments for the exact
normalisation statistics (:func:`~distilens.data.normalise.stats_from_moments`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .image_io import IMAGE_ERRORS, read_image, unreadable_image
from .normalise import apply_normalisation, image_moments

__all__ = ["LazyImages", "decode_all", "default_num_workers", "lazy_splits"]

_FINGERPRINT_VERSION = b"distilens-lazy-images/1"
_PROBE_BATCH = 32  # files per worker task in the up-front decode


def default_num_workers() -> int:
    """Worker processes for lazy loading: one per CPU this process may use, less one, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


def _unchanged(batch: Any) -> Any:
    """Collate function: :meth:`_Files.__getitems__` already returns the finished batch."""
    return batch


class _Files(Dataset):
    """Index i -> file i decoded (and normalised); ``__getitems__`` fetches a whole batch at once.

    Unreadable files come back as an error message instead of raising in a worker, so the
    user sees one clean line, not a worker traceback.
    """

    def __init__(self, files: tuple[str, ...], channels: int, size: tuple[int, int], mean: Tensor | None, std: Tensor | None):
        self.files, self.channels, self.size, self.mean, self.std = files, channels, size, mean, std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor | None, str]:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> tuple[Tensor | None, str]:
        x = np.empty((len(indices), self.channels, *self.size), dtype=np.float32)
        for j, i in enumerate(indices):
            try:
                x[j] = read_image(self.files[i], self.channels, self.size)
            except IMAGE_ERRORS as exc:
                return None, f"'{self.files[i]}' could not be read ({exc}); it was readable when the data was loaded"
        t = torch.from_numpy(x)
        if self.mean is None or self.std is None:
            return t, ""
        return apply_normalisation(t, self.mean, self.std, "image"), ""


class _Moments(_Files):
    """Index i -> ``(mean, m2)`` of file i, or the reason it is unreadable (the up-front decode)."""

    def __getitems__(self, indices: list[int]) -> list[tuple[np.ndarray, np.ndarray] | str]:  # type: ignore[override]
        out: list[tuple[np.ndarray, np.ndarray] | str] = []
        for i in indices:
            try:
                out.append(image_moments(read_image(self.files[i], self.channels, self.size)))
            except IMAGE_ERRORS as exc:
                out.append(str(exc) or type(exc).__name__)
        return out


class _BatchList:
    """A batch sampler over a list that can be swapped between epochs (persistent workers)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _loader(dataset: Dataset, batches: _BatchList, num_workers: int, persistent: bool) -> DataLoader:
    return DataLoader(
        dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=_unchanged,
        persistent_workers=persistent, prefetch_factor=2 if num_workers else None,
    )


class LazyImages:
    """Images of one split, read from their files when indexed: a tensor-like (N, C, H, W) float32.

    Args:
        files: The image files, in sample order.
        channels: 1 (grayscale) or 3 (RGB).
        size: (H, W) every image is resized to.
        mean: (C,) subtracted after scaling to [0, 1]; ``None`` leaves images unnormalised.
        std: (C,) divisor after subtracting ``mean``.
        num_workers: Processes that decode for :meth:`load_batches` (0: this process;
            default :func:`default_num_workers`).

    Example:
        >>> x = LazyImages(["a.png", "b.png"], 3, (32, 32))
        >>> x[torch.tensor([1, 0])].shape
        torch.Size([2, 3, 32, 32])
    """

    dtype = torch.float32

    def __init__(
        self,
        files: Sequence[str | Path],
        channels: int,
        size: tuple[int, int],
        mean: Tensor | None = None,
        std: Tensor | None = None,
        *,
        num_workers: int | None = None,
    ):
        self.files = tuple(str(f) for f in files)
        self.channels, self.size = int(channels), (int(size[0]), int(size[1]))
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        if self.num_workers < 0:
            raise DataError(f"data.num_workers must be 0 or more, not {self.num_workers}")
        self._dataset = _Files(self.files, self.channels, self.size, self.mean, self.std)
        self._loader: DataLoader | None = None
        self._sampler = _BatchList([])
        self._busy = False
        self._fingerprint: str | None = None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), self.channels, *self.size))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"LazyImages({len(self.files)} files, shape={tuple(self.shape)}, num_workers={self.num_workers})"

    def _positions(self, index: int | slice | Tensor | Sequence[int]) -> list[int]:
        n = len(self.files)
        if isinstance(index, slice):
            return list(range(n))[index]
        t = torch.as_tensor(index)
        if t.dtype == torch.bool:
            if t.shape != (n,):
                raise IndexError(f"a boolean index must have shape ({n},), not {tuple(t.shape)}")
            t = t.nonzero().flatten()
        pos = t.flatten().tolist()
        bad = [p for p in pos if not -n <= p < n]
        if bad:
            raise IndexError(f"index {bad[0]} is out of range for {n} images")
        return [p % n for p in pos]

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> Tensor:
        """Decode the images at ``index`` here: (B, C, H, W) for a slice/sequence, (C, H, W) for an int."""
        one = not isinstance(index, slice) and torch.as_tensor(index).dim() == 0  # int, 0-d tensor, numpy int
        x, error = self._dataset.__getitems__(self._positions(index))
        if x is None:
            raise DataError(error)
        return x[0] if one else x

    def subset(self, index: Tensor | Sequence[int]) -> "LazyImages":
        """The images at ``index``, still lazy, with the same preprocessing and workers."""
        files = [self.files[i] for i in self._positions(index)]
        return LazyImages(files, self.channels, self.size, self.mean, self.std, num_workers=self.num_workers)

    def normalised(self, mean: Tensor, std: Tensor) -> "LazyImages":
        """The same files, normalised with ``(x - mean) / std`` per channel."""
        return LazyImages(self.files, self.channels, self.size, mean, std, num_workers=self.num_workers)

    def fingerprint(self) -> str:
        """SHA-256 of the preprocessing and each file's path, size and modification time.

        Paths are absolute; contents are not read, so a folder copied with new
        modification times (or moved) gets a new fingerprint: a cache is then rebuilt,
        never wrongly reused.
        """
        if self._fingerprint is None:
            h = hashlib.sha256(_FINGERPRINT_VERSION)
            h.update(f"{self.channels},{self.size}".encode())
            for t in (self.mean, self.std):
                h.update(b"none" if t is None else t.numpy().tobytes())
            for f in self.files:
                st = os.stat(f)
                h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def load_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """Yield the images of each index tensor in ``batches``, in order, decoded ahead by workers.

        Workers persist between calls (one per epoch) so that they start once per run; a
        call made while another is still being read (nested loops over one split) gets
        its own short-lived workers.
        """
        plan = [b.tolist() for b in batches]
        if self.num_workers == 0:
            for positions in plan:
                yield self._checked(self._dataset.__getitems__(positions))
            return
        if self._busy:
            for out in _loader(self._dataset, _BatchList(plan), self.num_workers, persistent=False):
                yield self._checked(out)
            return
        if self._loader is None:
            self._loader = _loader(self._dataset, self._sampler, self.num_workers, persistent=True)
        self._sampler.batches = plan  # read by the loader's next iterator, in this process
        self._busy = True
        try:
            for out in self._loader:
                yield self._checked(out)
        finally:
            self._busy = False

    @staticmethod
    def _checked(out: tuple[Tensor | None, str]) -> Tensor:
        x, error = out
        if x is None:
            raise DataError(error)
        return x

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes are not copied; a copy starts its own when it first loads.
        state = dict(self.__dict__)
        state.update(_loader=None, _sampler=_BatchList([]), _busy=False)
        return state


def decode_all(
    files: Sequence[str | Path], channels: int, size: tuple[int, int], num_workers: int
) -> list[tuple[np.ndarray, np.ndarray] | str]:
    """Decode every file once, in ``num_workers`` processes: its moments, or why it is unreadable.

    Args:
        files: Image files.
        channels: 1 or 3.
        size: (H, W).
        num_workers: Decoding processes (0: this process).

    Returns:
        For each file, in order, :func:`~distilens.data.normalise.image_moments` of its
        (C, H, W) pixels in [0, 1], or the error message of an unreadable file.
    """
    data = _Moments(tuple(str(f) for f in files), channels, size, None, None)
    plan = [list(range(i, min(i + _PROBE_BATCH, len(files)))) for i in range(0, len(files), _PROBE_BATCH)]
    if num_workers == 0 or len(plan) < 2:
        return [m for positions in plan for m in data.__getitems__(positions)]
    return [m for out in _loader(data, _BatchList(plan), num_workers, persistent=False) for m in out]


def lazy_splits(
    files: dict[str, list[tuple[Path, int]]],
    channels: int,
    size: tuple[int, int],
    skip_bad_files: bool,
    num_workers: int | None,
) -> tuple[dict[str, tuple[LazyImages, Tensor]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Lazy (unnormalised) images and labels per split, after decoding every file once.

    Args:
        files: ``(path, label)`` per split, as found by the folder scan.
        channels, size: The preprocessing.
        skip_bad_files: Warn about and drop unreadable files instead of raising.
        num_workers: Decoding processes (``None``: :func:`default_num_workers`).

    Returns:
        ``({split: (images, labels)}, {path: moments})`` for the readable files.
    """
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 0:
        raise DataError(f"data.num_workers must be 0 or more, not {workers}")
    paths = [p for items in files.values() for p, _ in items]
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    bad: list[str] = []
    for p, result in zip(paths, decode_all(paths, channels, size, workers)):
        if isinstance(result, str):
            if not skip_bad_files:
                raise unreadable_image(p, result)
            bad.append(str(p))
        else:
            moments[str(p)] = result
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s): {', '.join(bad)}", stacklevel=4)
    loaded = {}
    for split, items in files.items():
        keep = [(p, label) for p, label in items if str(p) in moments]
        images = LazyImages([p for p, _ in keep], channels, size, num_workers=workers)
        loaded[split] = (images, torch.tensor([label for _, label in keep], dtype=torch.int64))
    return loaded, moments
