"""Train/eval mode as context managers: the mode a block needs, and the caller's mode back afterwards."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

__all__ = ["eval_mode", "train_mode"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (batch norm uses running statistics, no dropout), restore afterwards.

    Example:
        >>> with eval_mode(model):
        ...     logits = model(x)
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in train mode for the block, restore its mode afterwards."""
    was_training = model.training
    model.train()
    try:
        yield model
    finally:
        model.train(was_training)
