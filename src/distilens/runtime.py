"""Device, precision and seeding: the few switches the trainer and pipeline share."""

from __future__ import annotations

import contextlib
import random
from typing import ContextManager

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["resolve_device", "amp_dtype", "autocast", "seed_everything"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU; an explicit device must exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"runtime.device '{device}': this torch build has no CUDA device; use 'cpu' or 'auto', "
                "or install a CUDA build of torch"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"runtime.device '{device}': only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"runtime.device '{device}': MPS is not available here; use 'cpu' or 'auto'")
    return dev


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    ``auto`` is bf16 on CUDA devices that support it, else fp32. Half precision is used on
    CUDA only: on CPU it is slower than fp32 for these model sizes.
    """
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[object]:
    """``torch.autocast`` for ``dtype``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
