"""Fashion-MNIST (Xiao et al. 2017) from its four IDX files, with the official train/test split.

70,000 grey 28×28 photos of clothing in 10 balanced classes: 60,000 for training, 10,000 for
testing. Nothing is downloaded: the files are read from ``$DISTILENS_FASHION_MNIST`` when that
is set, else from ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``
package). Either folder holds the files as the dataset's authors publish them, gzipped
(``train-images-idx3-ubyte.gz`` …) or unpacked (``train-images-idx3-ubyte`` …).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import DataError
from .idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_ENV", "FASHION_MNIST_DIR", "FASHION_MNIST_FILES",
    "FashionMNIST", "fashion_mnist_root", "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_ENV = "DISTILENS_FASHION_MNIST"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# (split, what) → file name without ".gz", as published.
FASHION_MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_SIDE = 28


class FashionMNIST(NamedTuple):
    """The training images followed by the test images, as read."""

    inputs: Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    targets: Tensor  # (N,) int64, 0-9 (FASHION_MNIST_CLASSES)
    test_only: Tensor  # (N,) bool: True for the test file's images


def fashion_mnist_root(root: str | Path | None = None) -> Path:
    """The folder to read: ``root`` if given, else ``$DISTILENS_FASHION_MNIST``, else the Debian path."""
    if root is not None:
        return Path(root)
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else FASHION_MNIST_DIR


def _find(folder: Path, stem: str, where: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"builtin:fashion_mnist: {stem}.gz is not in {folder} ({where}); "
        "install the files with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the "
        f"four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz from the Fashion-MNIST release in a folder and set {FASHION_MNIST_ENV} to it"
    )


def _read_split(folder: Path, split: str, where: str) -> tuple[Tensor, Tensor]:
    """(N, 28, 28) uint8 images and (N,) int64 labels of one split, checked against each other."""
    images_path = _find(folder, FASHION_MNIST_FILES[(split, "images")], where)
    labels_path = _find(folder, FASHION_MNIST_FILES[(split, "labels")], where)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (_SIDE, _SIDE):
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, {_SIDE}, {_SIDE}), "
            f"found {str(images.dtype).removeprefix('torch.')} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: expected {images.shape[0]:,} uint8 labels (one per image in {images_path.name}), "
            f"found {str(labels.dtype).removeprefix('torch.')} {tuple(labels.shape)}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{images_path}: holds no images")
    top = int(labels.max())
    if top >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{labels_path}: label {top} is out of range; Fashion-MNIST labels are 0 to 9")
    return images, labels.long()


def load_fashion_mnist(root: str | Path | None = None) -> FashionMNIST:
    """Read Fashion-MNIST; the 10,000 official test images are marked as the test split.

    The training and test files are read as uint8 and converted to float32 in [0, 1] once,
    together (70,000 × 784 floats, 220 MB). ``test_only`` marks the test file's images:
    ``builtin:fashion_mnist`` passes it on, so the loader uses them, and only them, as the
    test split and carves validation out of the 60,000 training images.

    Args:
        root: Folder with the four IDX files; ``None``: ``$DISTILENS_FASHION_MNIST`` if set,
            else ``/usr/share/datasets/fashion-mnist``.

    Returns:
        :class:`FashionMNIST`: inputs (N, 1, 28, 28) float32, targets (N,) int64 indexing
        :data:`FASHION_MNIST_CLASSES`, ``test_only`` (N,) bool.

    Raises:
        DataError: A file is missing (the message says how to get them), damaged, or not
            Fashion-MNIST's shape (28×28 uint8 images, one uint8 label 0–9 per image).

    Example:
        >>> raw = load_fashion_mnist()
        >>> raw.inputs.shape, int(raw.test_only.sum())
        (torch.Size([70000, 1, 28, 28]), 10000)
    """
    folder = fashion_mnist_root(root)
    if root is not None:
        where = "the folder given"
    elif os.environ.get(FASHION_MNIST_ENV):
        where = f"from {FASHION_MNIST_ENV}"
    else:
        where = f"the default; {FASHION_MNIST_ENV} is not set"
    train_x, train_y = _read_split(folder, "train", where)
    test_x, test_y = _read_split(folder, "test", where)
    images = torch.cat([train_x, test_x])  # (N, 28, 28) uint8
    inputs = images.unsqueeze(1).to(torch.float32).div_(255.0)  # the one float copy: (N, 1, 28, 28)
    test_only = torch.zeros(images.shape[0], dtype=torch.bool)
    test_only[train_x.shape[0]:] = True
    return FashionMNIST(inputs, torch.cat([train_y, test_y]), test_only)
