"""The teacher's soft labels, computed once and stored, so that distillation never runs it.

A cache is keyed by SHA-256 over the teacher's state dict and the split's fingerprint
(normalised inputs and labels, so the preprocessing is part of the key). Changing either
gives another key, and a stale file is never served.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..data.bundle import Split, iterate_batches
from ..io import atomic_write
from ..models.io import state_dict_digest

__all__ = ["SoftLabelCache"]

_VERSION = "softlabels/1"


class SoftLabelCache:
    """Teacher logits for every sample of one split, addressed by sample index.

    Attributes:
        logits: (N, C) float32 teacher logits, row i for sample i of the split.
        key: Hex digest naming the (teacher weights, data) pair it was computed from.

    Example:
        >>> cache = SoftLabelCache.build(teacher, bundle.train)
        >>> cache[torch.tensor([0, 5])].shape
        torch.Size([2, 10])
    """

    def __init__(self, logits: Tensor, key: str) -> None:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
        self.logits = logits
        self.key = key

    # ------------------------------------------------------------------ building
    @staticmethod
    def key_for(teacher: nn.Module, split: Split) -> str:
        """The cache key of ``teacher`` on ``split``."""
        h = hashlib.sha256(_VERSION.encode())
        h.update(state_dict_digest(teacher).encode())
        h.update(split.fingerprint().encode())
        return h.hexdigest()

    @classmethod
    @torch.no_grad()
    def build(
        cls, teacher: nn.Module, split: Split, *, batch_size: int = 512, device: str | torch.device | None = None
    ) -> "SoftLabelCache":
        """Run ``teacher`` once over ``split`` in eval mode (its mode is restored afterwards)."""
        device = torch.device(device) if device is not None else next(teacher.parameters()).device
        was_training = teacher.training
        teacher.eval()
        try:
            chunks = [teacher(x.to(device)).float().cpu() for x, _, _ in iterate_batches(split, batch_size)]
        finally:
            teacher.train(was_training)
        return cls(torch.cat(chunks), cls.key_for(teacher, split))

    # ------------------------------------------------------------------ storage
    @staticmethod
    def filename(key: str) -> str:
        return f"softlabels-{key[:24]}.safetensors"

    def save(self, directory: str | Path) -> Path:
        """Write the cache atomically into ``directory``; returns the file's path."""
        path = Path(directory) / self.filename(self.key)
        tensors = {"logits": self.logits.detach().cpu().contiguous()}
        meta = {"format": _VERSION, "key": self.key}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path, *, key: str, num_samples: int) -> "SoftLabelCache":
        """Read a cache file and check it is the one for ``key`` with ``num_samples`` rows.

        Raises:
            ValueError: the file is unreadable, cut short, or holds another key or shape.
        """
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"cannot read soft-label cache '{path}': {exc}") from None
        logits = tensors.get("logits")
        if meta.get("key") != key or logits is None:
            raise ValueError(f"soft-label cache '{path}' belongs to another teacher or data set")
        if logits.dim() != 2 or logits.shape[0] != num_samples or not torch.isfinite(logits).all():
            raise ValueError(f"soft-label cache '{path}' has shape {tuple(logits.shape)}, expected ({num_samples}, C)")
        return cls(logits.float(), key)

    @classmethod
    def load_or_build(
        cls,
        teacher: nn.Module,
        split: Split,
        *,
        directories: Iterable[str | Path],
        save_to: str | Path,
        batch_size: int = 512,
    ) -> tuple["SoftLabelCache", bool]:
        """Serve a valid cache from the first of ``directories`` that holds one, else build it.

        The result is always saved into ``save_to`` (copied when it came from elsewhere).

        Returns:
            ``(cache, hit)`` where ``hit`` says it was read rather than computed.
        """
        key = cls.key_for(teacher, split)
        for directory in directories:
            path = Path(directory) / cls.filename(key)
            if not path.is_file():
                continue
            try:
                cache = cls.load(path, key=key, num_samples=len(split))
            except ValueError as exc:
                warnings.warn(f"{exc}; computing the soft labels again", stacklevel=2)
                continue
            if Path(save_to).resolve() != Path(directory).resolve():
                cache.save(save_to)
            return cache, True
        cache = cls.build(teacher, split, batch_size=batch_size)
        cache.save(save_to)
        return cache, False

    # ------------------------------------------------------------------ serving
    def to(self, device: str | torch.device) -> "SoftLabelCache":
        """Move the logits (once) to the device the student trains on."""
        self.logits = self.logits.to(device)
        return self

    def __getitem__(self, index: Tensor) -> Tensor:
        """(B,) sample indices → (B, C) teacher logits."""
        return self.logits[index.to(self.logits.device)]

    def __len__(self) -> int:
        return int(self.logits.shape[0])
