"""Images from files: the one decoding rule of every reader, and the image preprocessing.

Every image reader (the in-memory image-folder loader, the lazy worker processes, and
prediction on new files) decodes with :func:`read_image` and catches :data:`IMAGE_ERRORS`,
so training and prediction see the same pixels and the same unreadable files. Images are
read with Pillow (PNG, JPEG, BMP, WebP, TIFF), converted to 1 (grayscale) or 3 (RGB)
channels (an alpha channel is dropped, palettes are expanded), resized to (H, W) with
bilinear filtering and scaled to [0, 1] as float32. Hidden files and folders (names
starting with ".") and files with other extensions are ignored.

:class:`ImagePreprocessor` is that decoding followed by the training split's per-channel
normalisation: what ``preprocessing.json`` of an image run holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DataError
from ..limits import IMAGE_ERRORS, open_image
from .bundle import InputSpec
from .normalise import apply_normalisation
from .preprocessing import PredictionInputs, SavedAsJson, check_format, existing_input

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_ERRORS",
    "GRAY_MODES",
    "list_images",
    "probe_image",
    "read_image",
    "unreadable_image",
    "ImagePreprocessor",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
#: Pillow modes without colour: an image folder of only these defaults to one channel.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_FORMAT = "distilens-image-preprocessing/1"


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden entries and other extensions skipped."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and all(not part.startswith(".") for part in rel) and p.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(p)
    return found


def probe_image(path: Path) -> tuple[int, int, str]:
    """(width, height, mode) of an image after Pillow's structural check; raises one of :data:`IMAGE_ERRORS`."""
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
        One of :data:`IMAGE_ERRORS` on a file that is not an image, is truncated or too large.

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


def unreadable_image(path: Path | str, reason: object) -> DataError:
    """The training-time error for an image that cannot be read (with the way to skip it)."""
    return DataError(f"'{path}' is not a readable image ({reason}); remove it or set data.skip_bad_files: true")


@dataclass(frozen=True)
class ImagePreprocessor(SavedAsJson):
    """How image files become model inputs: decode, resize, scale to [0, 1], normalise per channel.

    Attributes:
        channels: 1 (grayscale) or 3 (RGB).
        image_size: (H, W) every image is resized to.
        mean: (C,) per-channel mean of the training images (in [0, 1] units).
        std: (C,) per-channel std of the training images.

    Example:
        >>> pre = ImagePreprocessor.load("runs/pets")
        >>> inputs = pre.read("new_photos/")
        >>> inputs.names[0], inputs.batch(0, 8).shape
        ('a.png', torch.Size([8, 3, 32, 32]))
    """

    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    kind: ClassVar[str] = "image"

    def transform(self, files: Sequence[str | Path]) -> Tensor:
        """(B, C, H, W) float32 normalised inputs of the image files, as in training.

        Raises:
            DataError: a file is not a readable image (named in the message).
        """
        x = np.empty((len(files), self.channels, *self.image_size), dtype=np.float32)
        for i, p in enumerate(files):
            try:
                x[i] = read_image(p, self.channels, self.image_size)
            except IMAGE_ERRORS as exc:
                raise DataError(f"'{p}' is not a readable image ({exc}); remove it from the input") from None
        return apply_normalisation(torch.from_numpy(x), torch.tensor(self.mean), torch.tensor(self.std), "image")

    def read(self, path: str | Path) -> PredictionInputs:
        """An image file, or a folder of them (recursive, sorted), as model inputs.

        Names are the file name for one image and the path relative to the folder for a
        folder's images. Files are decoded batch by batch, when asked for.
        """
        path = existing_input(path, "an image or a folder of images")
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise DataError(f"folder '{path}' holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            names = [p.relative_to(path).as_posix() for p in files]
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            files, names = [path], [path.name]
        else:
            raise DataError(f"the model was trained on images; '{path}' is not an image file or folder")
        return PredictionInputs(names, lambda start, stop: self.transform(files[start:stop]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (plain lists and finite floats)."""
        return {
            "format": _FORMAT,
            "channels": self.channels,
            "image_size": list(self.image_size),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], folder: str | Path | None = None) -> "ImagePreprocessor":
        """The inverse of :meth:`to_dict` (``folder`` is not needed)."""
        check_format(d, _FORMAT, "image")
        h, w = (int(s) for s in d["image_size"])
        return cls(int(d["channels"]), (h, w), tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"]))

    @classmethod
    def from_spec(cls, spec: InputSpec, folder: str | Path | None = None, *, text_column: str | None = None) -> "ImagePreprocessor":
        """The preprocessing a model's :class:`InputSpec` describes: its (C, H, W) and mean/std.

        Run folders from before ``preprocessing.json`` was written for images predict this way.
        """
        c, h, w = spec.shape
        return cls(int(c), (int(h), int(w)), tuple(spec.mean), tuple(spec.std))
