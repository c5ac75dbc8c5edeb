"""Training checkpoints: one atomic file per run, enough to continue bit-identically.

The file holds the model, the objectives' own parameters (e.g. a hint adapter), the
optimiser, scheduler and loss-scaler states, the epoch, the shuffling generator and the
global RNG states, the best weights so far and the history. It is written with
``torch.save`` into a temporary file renamed over the old one (a crash leaves the previous
checkpoint intact) and read with ``torch.load(weights_only=True)``: tensors and plain
containers only, nothing is unpickled into code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import DistilensError
from ..io import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "check_signature"]

_FORMAT = "distilens-checkpoint/1"


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when there is one)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path`` (tensors are moved to the CPU first)."""
    state = {"format": _FORMAT, **state}
    return atomic_write(path, lambda tmp: torch.save(_to_cpu(state), tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        DistilensError: the file is not a readable distilens checkpoint.
    """
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DistilensError(f"cannot read checkpoint '{path}': {exc}; delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise DistilensError(f"'{path}' is not a distilens checkpoint; delete it or pick another path")
    return state


def check_signature(path: str | Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume when the run's settings differ from the checkpoint's."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise DistilensError(
                f"checkpoint '{path}' was written with {key}={saved.get(key)!r} but this run has "
                f"{key}={current.get(key)!r}; resume with the same settings or delete the checkpoint"
            )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
