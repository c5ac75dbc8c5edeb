"""Which augmented view of each training image a step sees: drawn per epoch, or stored with the teacher's labels.

Augmentation parameters are drawn for the whole training split at once, from a generator
seeded by (seed, kind, index) alone: row i of the draw belongs to sample i. So the view of a
sample depends on the seed, the epoch (or the stored view's number) and the sample, never
on the batch it lands in, the shuffling order or the process that trains on it: a
data-parallel share, a lazily read batch and an in-memory batch get the very same pixels.

Two kinds of draws:

* ``epoch``: fresh views every epoch (:func:`epoch_params`), for label-only training, the
  teacher's own training and online distillation (the teacher labels each view in the step).
* ``stored``: K views drawn once (:func:`stored_params`), whose parameters and teacher soft
  labels the soft-label cache keeps (FKD, Shen & Xing 2022); epoch e (1-based) trains on
  view (e − 1) mod K, so the teacher never runs during distillation and the labels are
  exactly those of the view the student sees.

Example:
    >>> aug = parse_augment([{"name": "crop", "padding": 4}, {"name": "hflip"}])
    >>> params = epoch_params(aug, len(split), (28, 28), seed=1, epoch=3)   # (N, 2) and (N,)
    >>> x = aug.apply(split.inputs[idx], [p[idx] for p in params])          # the batch's views
"""

from __future__ import annotations

import hashlib
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from ..data.augment import Augment
from ..data.bundle import Split, iterate_batches
from ..models.modes import eval_mode


class StoredViews(Protocol):
    """What :class:`TrainingViews` reads of a soft-label cache holding stored views
    (:class:`~distilens.distill.teacher_cache.SoftLabelCache`; a Protocol, so this module,
    which the cache imports, does not import it back)."""

    views: int

    def rows(self, index: Tensor, view: int = 0) -> Tensor:
        """The cache rows of samples ``index`` in view ``view``."""
        ...

    def view_params(self, index: Tensor, view: int) -> tuple[Tensor, ...]:
        """Each op's stored parameters of samples ``index`` in view ``view``."""
        ...

__all__ = [
    "StoredViews", "view_generator", "epoch_params", "stored_params", "stored_view", "rows_of_view", "label_stored_views",
    "TrainingViews",
]

_VERSION = "distilens-views/1"


def view_generator(seed: int, kind: Literal["epoch", "stored"], index: int) -> torch.Generator:
    """A CPU generator seeded by (``seed``, ``kind``, ``index``) through SHA-256 (63 bits).

    Hashing keeps nearby seeds and indices apart: (seed 1, epoch 2) and (seed 2, epoch 1)
    draw unrelated numbers.
    """
    digest = hashlib.sha256(f"{_VERSION}:{kind}:{int(seed)}:{int(index)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def epoch_params(augment: Augment, n: int, size: tuple[int, int], *, seed: int, epoch: int) -> tuple[Tensor, ...]:
    """Every op's parameters for the ``n`` samples in ``epoch``: one (n, …) tensor per op, row i for sample i.

    Args:
        augment: The ops.
        n: Samples in the training split.
        size: (H, W) of the images.
        seed: The training run's seed.
        epoch: The epoch (1-based).
    """
    return augment.sample(n, size, view_generator(seed, "epoch", epoch))


def stored_params(augment: Augment, n: int, size: tuple[int, int], *, seed: int, view: int) -> tuple[Tensor, ...]:
    """Every op's parameters of stored view ``view`` (0-based) for the ``n`` samples; as :func:`epoch_params`."""
    return augment.sample(n, size, view_generator(seed, "stored", view))


def stored_view(epoch: int, views: int) -> int:
    """The stored view epoch ``epoch`` (1-based) trains on: (epoch − 1) mod K.

    Example:
        >>> [stored_view(e, 3) for e in range(1, 6)]
        [0, 1, 2, 0, 1]
    """
    return (int(epoch) - 1) % int(views)


def rows_of_view(index: Tensor, view: int, n: int) -> Tensor:
    """Cache rows of samples ``index`` in stored view ``view``: rows are view-major, view k of sample i at k·n + i."""
    return index + int(view) * int(n)


@torch.no_grad()
def label_stored_views(
    teacher: nn.Module, split: Split, augment: Augment, views: int, *, seed: int, batch_size: int, device: torch.device,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The teacher's logits of K stored views of every image of ``split``, and the views' parameters.

    The teacher runs in eval mode (its mode is restored), once per view, on the views made
    from the split's inputs (read lazily in batches where the split is lazy).

    Args:
        teacher: The trained teacher.
        split: The training split (N images).
        augment: The ops.
        views: K.
        seed: Seeds the views (:func:`stored_params`).
        batch_size: Images per teacher forward.
        device: Where the teacher runs.

    Returns:
        ``(logits, params)``: (K·N, C) float32 logits on the CPU, row k·N + i for view k of
        sample i, and per op the (K·N, …) parameters in the same row order.
    """
    n, size = len(split), (int(split.inputs.shape[-2]), int(split.inputs.shape[-1]))
    logits: list[Tensor] = []
    params: list[tuple[Tensor, ...]] = []
    with eval_mode(teacher):
        for k in range(int(views)):
            p = stored_params(augment, n, size, seed=seed, view=k)
            for x, _, idx in iterate_batches(split, batch_size):
                x = augment.apply(x.to(device), [t[idx].to(device) for t in p])
                logits.append(teacher(x).float().cpu())
            params.append(p)
    return torch.cat(logits), tuple(torch.cat(per_op) for per_op in zip(*params))


class TrainingViews:
    """The views a training run sees: fresh ones drawn every epoch, or a cache's stored ones.

    Args:
        augment: The ops.
        n: Samples in the training split.
        size: (H, W) of its images.
        seed: Seeds the per-epoch draws (the training run's seed).
        stored: A soft-label cache holding K stored views (``views`` > 1 or an augmentation):
            epoch e trains on its view (e − 1) mod K, with its parameters. ``None``: draw
            fresh views every epoch.

    Example:
        >>> views = TrainingViews(aug, len(split), (28, 28), seed=1)
        >>> views.start_epoch(1)
        >>> x_view = views.apply(x, idx)
    """

    def __init__(self, augment: Augment, n: int, size: tuple[int, int], *, seed: int, stored: StoredViews | None = None):
        self.augment, self.n, self.size, self.seed, self.stored = augment, int(n), size, int(seed), stored
        self.view = 0
        self._params: tuple[Tensor, ...] | None = None

    def start_epoch(self, epoch: int) -> None:
        """Pick epoch ``epoch``'s (1-based) views: the stored view (e − 1) mod K, or a fresh draw."""
        if self.stored is not None:
            self.view = stored_view(epoch, self.stored.views)
        else:
            self._params = epoch_params(self.augment, self.n, self.size, seed=self.seed, epoch=epoch)

    def params(self, index: Tensor) -> tuple[Tensor, ...]:
        """Each op's parameters of samples ``index`` (B,) this epoch."""
        if self.stored is not None:
            return self.stored.view_params(index, self.view)
        if self._params is None:
            raise RuntimeError("TrainingViews.start_epoch must be called before the epoch's first batch")
        return tuple(p[index.to(p.device)] for p in self._params)

    def apply(self, x: Tensor, index: Tensor) -> Tensor:
        """The views of the (B, C, H, W) batch ``x`` of samples ``index`` this epoch."""
        return self.augment.apply(x, [p.to(x.device) for p in self.params(index)])

    def rows(self, index: Tensor) -> Tensor:
        """The teacher-cache rows of samples ``index`` this epoch: those of the stored view, or ``index``."""
        return self.stored.rows(index, self.view) if self.stored is not None else index
