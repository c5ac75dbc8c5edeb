"""Built-in data sets: shipped with scikit-learn or drawn procedurally, so nothing is downloaded.

:func:`load_builtin` splits a registered set (:data:`DATASETS`) by seed and normalises it
with the training split's statistics; a new set is one registered function returning
:class:`RawData`. A set read from files takes a ``root`` argument (``data.root``). A set may
also declare the run settings that suit it (:data:`RECIPES`, a partial run config), which
:func:`distilens.data.recipes.with_dataset_defaults` applies where the config is silent.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry
from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from .bundle import DataBundle, InputSpec, Split
from .image_io import ImagePreprocessor
from .normalise import apply_normalisation, fit_normalisation
from .split import SplitInfo, split_indices
from .table import ColumnSpec, TablePreprocessor

__all__ = ["DATASETS", "RECIPES", "RawData", "make_shapes", "SHAPE_CLASSES", "load_builtin"]


class RawData(NamedTuple):
    """A whole data set before splitting: raw (unnormalised) inputs and integer labels."""

    inputs: Tensor  # (N, *shape) float32
    targets: Tensor  # (N,) int64
    kind: str  # "image" | "table"
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    masks: Tensor | None = None  # (N, H, W) bool ground-truth relevance, where known
    test_only: Tensor | None = None  # (N,) bool: samples that form the test split, and only they
    test_kind: Literal["official", "fixed"] = "fixed"  # official: the data set's published test split


DATASETS: Registry[Callable[..., RawData]] = Registry("dataset")
#: Run settings a built-in set declares, as a partial run config (teacher, student, distill
#: keys), applied only where the user's config leaves them unset (data/recipes.py).
RECIPES: Registry[dict[str, Any]] = Registry("dataset recipe")


@DATASETS.register("digits")
def digits(seed: int = 0) -> RawData:
    """sklearn's 8×8 handwritten digits (1,797 images, 10 classes), pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    return RawData(x, y, "image", tuple(str(c) for c in range(10)))


@DATASETS.register("fashion_mnist")
def fashion_mnist(seed: int = 0, root: str | Path | None = None) -> RawData:
    """Fashion-MNIST: 70,000 28×28 grey clothing photos, 10 classes, the official 10,000 as test split."""
    data = load_fashion_mnist(root)
    return RawData(data.inputs, data.targets, "image", FASHION_MNIST_CLASSES, test_only=data.test_only, test_kind="official")


# Minutes on two CPU cores (README, "Fashion-MNIST"); BENCHMARKS.md has the longer recipe.
RECIPES.register("fashion_mnist")({
    "teacher": {"arch": "cnn", "args": {"width": 16}, "train": {"epochs": 3, "batch_size": 128, "lr": 3e-3}},
    "student": {"arch": "cnn", "args": {"width": 4}},
    "distill": {"epochs": 3, "batch_size": 128},
})


@DATASETS.register("breast_cancer")
def breast_cancer(seed: int = 0) -> RawData:
    """sklearn's Wisconsin breast-cancer table (569 rows, 30 numeric features, 2 classes)."""
    from sklearn.datasets import load_breast_cancer

    return _sklearn_table(load_breast_cancer())


SHAPE_CLASSES = ("square", "disc", "triangle", "cross")


def _shape_mask(kind: int, cy: float, cx: float, r: float, size: int) -> np.ndarray:
    """(size, size) bool pixels of a filled shape of "radius" ``r`` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # square, a little smaller than the disc so the areas are alike
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if kind == 1:  # disc
        return dy**2 + dx**2 <= r**2
    if kind == 2:  # triangle, apex up: half-width grows linearly from 0 to r
        return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)
    arm = max(1.0, r / 3)  # cross
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


def make_shapes(
    n: int = 2000,
    size: int = 32,
    *,
    spurious: bool = False,
    spurious_strength: float = 0.95,
    test_fraction: float = 0.2,
    noise: float = 0.1,
    seed: int = 0,
) -> RawData:
    """Procedural shapes with ground-truth masks: where should a model look?

    One channel, ``size`` × ``size``. Each image has one bright filled shape whose kind is
    the class (square, disc, triangle, cross), at a random place and size (radius size/8 to
    size/4), on Gaussian background noise (σ = ``noise``). 0–2 distractor shapes of other
    kinds are drawn *as outlines at half the brightness*, so they never decide the class
    (the task stays learnable) but a model that looks at shapes in general is distracted.
    ``masks[i]`` is the class-determining shape's pixels (bool), drawn last, on top.

    Spurious cue (``spurious=True``): a 3 × 3 bright patch at one of the four corners. In
    the training part the corner is the label's (class c → corner c) with probability
    ``spurious_strength``, else random; in the test part it is always random, so a model
    that learned the shortcut loses accuracy and its maps leave the mask. The test part is
    marked in ``test_only`` (a ``test_fraction`` of each class), and the loader puts exactly
    those samples into the test split. The cue is not in the mask.

    Generation is vectorised per image and takes well under a second for 2,000 images.

    Example:
        >>> raw = make_shapes(n=200, spurious=True, seed=1)
        >>> raw.inputs.shape, raw.masks.shape
        (torch.Size([200, 1, 32, 32]), torch.Size([200, 32, 32]))
    """
    rng = np.random.default_rng(seed)
    k = len(SHAPE_CLASSES)
    y = rng.permutation(np.arange(n) % k)
    images = rng.normal(0.0, noise, size=(n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    r_lo, r_hi = size / 8, size / 4
    for i in range(n):
        for _ in range(int(rng.integers(0, 3))):  # distractors: other kinds, outlines, fainter
            kind = int(rng.choice([c for c in range(k) if c != y[i]]))
            r = rng.uniform(r_lo, r_hi)
            cy, cx = rng.uniform(r, size - 1 - r, size=2)
            filled = _shape_mask(kind, cy, cx, r, size)
            inner = _shape_mask(kind, cy, cx, max(0.0, r - 1.5), size)
            images[i][filled & ~inner] = 0.5
        r = rng.uniform(r_lo, r_hi)
        cy, cx = rng.uniform(r, size - 1 - r, size=2)
        masks[i] = _shape_mask(int(y[i]), cy, cx, r, size)
        images[i][masks[i]] = 1.0 + rng.normal(0.0, noise, size=int(masks[i].sum()))
    test_only = None
    if spurious:
        test_only = np.zeros(n, dtype=bool)
        for c in range(k):  # a stratified test part
            members = np.flatnonzero(y == c)
            test_only[members[: int(round(test_fraction * members.size))]] = True
        corner = np.where(rng.random(n) < spurious_strength, y, rng.integers(0, k, size=n)) % 4
        corner[test_only] = rng.integers(0, 4, size=int(test_only.sum()))
        p = 3
        for i in range(n):
            r0 = 0 if corner[i] in (0, 1) else size - p
            c0 = 0 if corner[i] in (0, 2) else size - p
            images[i, r0 : r0 + p, c0 : c0 + p] = 1.0
            masks[i, r0 : r0 + p, c0 : c0 + p] = False
    return RawData(
        torch.from_numpy(images).unsqueeze(1),  # (N, 1, size, size)
        torch.from_numpy(y.astype(np.int64)),
        "image",
        SHAPE_CLASSES,
        masks=torch.from_numpy(masks),
        test_only=torch.from_numpy(test_only) if test_only is not None else None,
    )


@DATASETS.register("shapes")
def shapes(seed: int = 0) -> RawData:
    """2,000 procedural 32×32 shapes (4 classes) with ground-truth masks; see :func:`make_shapes`."""
    return make_shapes(n=2000, seed=seed)


@DATASETS.register("shapes_spurious")
def shapes_spurious(seed: int = 0) -> RawData:
    """``shapes`` with a corner patch that gives the label away in train, random in test."""
    return make_shapes(n=2000, spurious=True, seed=seed)


@DATASETS.register("wine")
def wine(seed: int = 0) -> RawData:
    """sklearn's wine recognition table (178 rows, 13 numeric features, 3 cultivars)."""
    from sklearn.datasets import load_wine

    return _sklearn_table(load_wine())


def _sklearn_table(d: object) -> RawData:
    """A scikit-learn ``Bunch`` (data, target, target_names, feature_names) as a table."""
    x = torch.from_numpy(d.data.astype(np.float32))  # type: ignore[attr-defined]
    y = torch.from_numpy(d.target.astype(np.int64))  # type: ignore[attr-defined]
    classes = tuple(str(c) for c in d.target_names)  # type: ignore[attr-defined]
    return RawData(x, y, "table", classes, tuple(str(f) for f in d.feature_names))  # type: ignore[attr-defined]


def load_builtin(
    name: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2, root: str | Path | None = None
) -> DataBundle:
    """A registered data set in seeded, stratified train/val/test splits, normalised on train.

    Where the set fixes its test part (``RawData.test_only``: Fashion-MNIST's official test
    images), those samples are the test split, ``test_fraction`` does not apply, and
    validation is ``val_fraction`` of the training part. Inputs are normalised per channel
    (images) or per feature (tables) with the training split's mean and std.

    Args:
        name: A name in :data:`DATASETS` (``distilens list datasets``).
        seed: Seeds the data (procedural sets) and the split.
        val_fraction: Fraction of all samples for validation (of the training part when the
            set fixes its test part).
        test_fraction: Fraction of all samples for testing.
        root: The folder a set read from files reads (``data.root``; Fashion-MNIST's four
            IDX files); ``None``: the set's default place.

    Returns:
        A :class:`DataBundle`; ``preprocessing`` is an
        :class:`~distilens.data.image_io.ImagePreprocessor` for images, a
        :class:`~distilens.data.table.TablePreprocessor` (numeric columns named after the
        features, missing values filled with the training median) for tables.

    Example:
        >>> load_builtin("wine").spec.shape
        (13,)
    """
    make_raw = DATASETS.get(name)
    if root is not None and "root" not in inspect.signature(make_raw).parameters:
        readers = [n for n in DATASETS.names() if "root" in inspect.signature(DATASETS.get(n)).parameters]
        raise ConfigError(f"data.root: builtin:{name} is not read from files; data.root applies to builtin:{', builtin:'.join(readers)}")
    raw = make_raw(seed, root=root) if root is not None else make_raw(seed)
    parts = split_indices(
        raw.targets, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, fixed_test=raw.test_only, name=name
    )
    mean, std = fit_normalisation(raw.inputs[parts.train], raw.kind)
    x = apply_normalisation(raw.inputs, mean, std, raw.kind)

    def make(i: Tensor) -> Split:
        masks = raw.masks[i] if raw.masks is not None else None
        return Split(x[i].contiguous(), raw.targets[i].contiguous(), masks)

    spec = InputSpec(
        kind=raw.kind,  # type: ignore[arg-type]
        shape=tuple(raw.inputs.shape[1:]),
        class_names=raw.class_names,
        feature_names=raw.feature_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )
    pre = _preprocessing(raw, spec, parts.train)
    if raw.test_only is None:
        info = SplitInfo("seeded", "seeded", seed, val_fraction=val_fraction, test_fraction=test_fraction)
    else:
        info = SplitInfo(raw.test_kind, "carved", seed, val_fraction=val_fraction)
    return DataBundle(name, make(parts.train), make(parts.val), make(parts.test), spec, preprocessing=pre, split_info=info)


def _preprocessing(raw: RawData, spec: InputSpec, train: Tensor) -> ImagePreprocessor | TablePreprocessor:
    """What prediction on new files applies: the spec's own image preprocessing, or a numeric table's."""
    if raw.kind == "image":
        return ImagePreprocessor.from_spec(spec)
    medians = np.median(raw.inputs[train].double().numpy(), axis=0).tolist()  # fill values missing at prediction time
    columns = [ColumnSpec(f, "numeric", m) for f, m in zip(raw.feature_names or spec.feature_names or (), medians)]
    return TablePreprocessor(columns, "target", list(raw.class_names), list(spec.mean), list(spec.std))
