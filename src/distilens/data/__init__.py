"""Data: built-in sets, seeded stratified splits, normalisation fitted on the training split."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import DataError
from .builtin import DATASETS, RawData
from .bundle import DataBundle, InputSpec, Split, iterate_batches

__all__ = ["load_dataset", "DataBundle", "InputSpec", "Split", "DATASETS", "iterate_batches"]

_SOURCES = ("builtin", "imagefolder", "csv")


def load_dataset(
    source: str = "builtin:digits",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    target: str | None = None,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    skip_bad_files: bool = False,
    text: str | None = None,
    max_length: int = 128,
    tokenizer: str | None = None,
    max_vocab: int = 20000,
    min_freq: int = 1,
    teacher_tokenizer: Any = None,
) -> DataBundle:
    """Load a data set and split it into seeded, stratified train/val/test splits.

    Inputs are normalised with statistics of the training split only (per channel for
    images, per feature for tables); the statistics are kept in ``bundle.spec``.

    Args:
        source: ``builtin:NAME`` (``distilens list datasets``; a bare name means builtin),
            ``imagefolder:PATH`` (:func:`~distilens.data.imagefolder.load_imagefolder`) or
            ``csv:PATH`` (:func:`~distilens.data.table.load_csv`).
        seed: Seeds the split.
        val_fraction: Fraction of all samples held out for validation.
        test_fraction: Fraction of all samples held out for testing.
        target: csv: the label column (required there).
        image_size: imagefolder: (H, W) all images are resized to (required when sizes differ).
        channels: imagefolder: 1 or 3; default 1 when every image is grayscale, else 3.
        skip_bad_files: imagefolder: warn about and skip unreadable files instead of raising.
        text: csv/tsv/jsonl: the text column; when set the file is a text data set
            (:func:`~distilens.data.text.load_text`, which documents the remaining options:
            ``max_length``, ``tokenizer``, ``max_vocab``, ``min_freq``, ``teacher_tokenizer``).

    Example:
        >>> bundle = load_dataset("builtin:digits")
        >>> bundle.spec.shape, bundle.spec.num_classes
        ((1, 8, 8), 10)
    """
    scheme, _, name = source.partition(":")
    if not name:
        scheme, name = "builtin", scheme
    if scheme not in _SOURCES:
        raise DataError(
            f"data.source '{source}': unknown source kind '{scheme}'; "
            "use builtin:NAME, imagefolder:PATH or csv:PATH"
        )
    if scheme == "imagefolder":
        from .imagefolder import load_imagefolder

        return load_imagefolder(
            name, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
            image_size=image_size, channels=channels, skip_bad_files=skip_bad_files,
        )
    if scheme == "csv" and text is not None:
        from .text import load_text

        return load_text(
            name, text=text, target=target, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
            max_length=max_length, tokenizer=tokenizer, max_vocab=max_vocab, min_freq=min_freq,  # type: ignore[arg-type]
            teacher_tokenizer=teacher_tokenizer,
        )
    if scheme == "csv" and name.lower().endswith(".jsonl"):
        raise DataError(f"data.source '{source}': .jsonl files are read as text data; set data.text to the text field")
    if scheme == "csv":
        from .table import load_csv

        return load_csv(name, target=target, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    raw = DATASETS.get(name)(seed)
    return split_dataset(name, raw, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def split_dataset(
    name: str, raw: RawData, *, seed: int, val_fraction: float, test_fraction: float
) -> DataBundle:
    """Stratified train/val/test split of ``raw`` and normalisation fitted on train.

    Where ``raw.test_only`` is set, those samples are the test split (``test_fraction`` is
    then the data's own) and train/val are split from the others.
    """
    n = raw.targets.shape[0]
    y = raw.targets.numpy()
    counts = np.bincount(y, minlength=len(raw.class_names))
    if (counts > 0).sum() < 2:
        raise DataError(f"data set '{name}' has fewer than two classes; a classifier needs two or more")
    idx = np.arange(n)
    try:
        if raw.test_only is not None:
            # The data fixes its test part (e.g. a distribution shift); train/val split the rest.
            fixed = raw.test_only.numpy()
            rest, test = idx[~fixed], idx[fixed]
            test_fraction = fixed.mean()
        else:
            rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1.0 - test_fraction), stratify=y[rest], random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"data set '{name}' cannot be split into stratified train/val/test ({exc}); "
            "lower data.val_fraction/test_fraction or add samples"
        ) from None
    train_t, val_t, test_t = (torch.from_numpy(np.sort(i)) for i in (train, val, test))

    x = raw.inputs
    reduce = [0, 2, 3] if raw.kind == "image" else [0]
    mean = x[train_t].mean(dim=reduce)
    std = x[train_t].std(dim=reduce).clamp_min(1e-6)
    shape = (1, -1, 1, 1) if raw.kind == "image" else (1, -1)
    xn = (x - mean.view(shape)) / std.view(shape)

    def make(i: torch.Tensor) -> Split:
        masks = raw.masks[i] if raw.masks is not None else None
        return Split(xn[i].contiguous(), raw.targets[i].contiguous(), masks)

    spec = InputSpec(
        kind=raw.kind,  # type: ignore[arg-type]
        shape=tuple(x.shape[1:]),
        class_names=raw.class_names,
        feature_names=raw.feature_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )
    return DataBundle(name, make(train_t), make(val_t), make(test_t), spec)
