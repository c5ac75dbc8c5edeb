"""Training checkpoints: enough to continue a run bit-identically, kept so a bad file is survivable.

The file holds :meth:`distill.state.TrainState.state_dict`: the model, the objectives' own
parameters (e.g. a hint adapter), the optimiser, scheduler and loss-scaler states, the
epoch, the shuffling generator and the global RNG states, the best weights so far and the
history. It is written with
``torch.save`` into a temporary file renamed over the old one, and read with
``torch.load(weights_only=True)``: tensors and plain containers only, nothing is unpickled
into code.

Beside ``NAME.pt`` lie ``NAME.pt.sha256`` (its size and SHA-256) and the previous good
checkpoint ``NAME.prev.pt`` (with its own digest). A file cut short or changed on disk
(a full disk, a copy interrupted half-way) no longer matches its digest; loading then warns
and falls back to the previous checkpoint, which costs one epoch instead of the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import DistilensError
from ..io import atomic_write_bytes, atomic_write_json

__all__ = [
    "save_checkpoint", "load_checkpoint", "previous_checkpoint", "rng_state", "set_rng_state", "check_signature",
]

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


def previous_checkpoint(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before ``path``: ``NAME.pt`` → ``NAME.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``path`` (tensors moved to the CPU), with its digest.

    A current checkpoint that still matches its digest becomes ``NAME.prev.pt`` first (a
    hard link, so ``path`` exists at every instant); a damaged one is not kept.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(_to_cpu({"format": _FORMAT, **state}), buffer)
    payload = buffer.getvalue()
    if path.is_file() and _verified_bytes(path)[1] is None:
        prev = previous_checkpoint(path)
        for src, dst in ((path, prev), (_digest_path(path), _digest_path(prev))):
            _link_over(src, dst)
    atomic_write_bytes(path, payload)
    # Written after the payload: a crash in between leaves a digest that no longer matches,
    # and loading falls back to NAME.prev.pt.
    atomic_write_json(_digest_path(path), {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()})
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, or the previous one if it is damaged.

    Warns (``UserWarning``) when it falls back to ``NAME.prev.pt``.

    Raises:
        DistilensError: neither the checkpoint nor the previous one is a readable, intact
            distilens checkpoint.
    """
    path = Path(path)
    state, problem = _inspect(path)
    if state is not None:
        return state
    prev = previous_checkpoint(path)
    prev_state, _ = _inspect(prev) if prev.is_file() else (None, None)
    if prev_state is not None:
        warnings.warn(
            f"checkpoint '{path}' {problem}; resuming from the previous one, '{prev.name}' (epoch {prev_state.get('epoch')})",
            stacklevel=2,
        )
        return prev_state
    raise DistilensError(
        f"checkpoint '{path}' {problem} and no intact previous checkpoint is left; delete '{path}' "
        "(or run without --resume) to start that training over"
    )


def _verified_bytes(path: Path) -> tuple[bytes, str | None]:
    """The file's bytes, and why they do not match the digest beside them (``None``: they do, or no digest)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return b"", f"cannot be read ({exc.strerror})"
    digest_path = _digest_path(path)
    if not digest_path.is_file():  # written before digests existed: torch.load still checks the structure
        return data, None
    try:
        digest = json.loads(digest_path.read_text(encoding="utf-8"))
        size, sha = int(digest["bytes"]), str(digest["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return data, f"has an unreadable digest file '{digest_path.name}'"
    if len(data) != size:
        return data, f"is {len(data)} bytes, not the {size} written (cut short)"
    if hashlib.sha256(data).hexdigest() != sha:
        return data, "does not match its SHA-256 digest (changed on disk)"
    return data, None


def _inspect(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` for an intact checkpoint, else ``(None, why not)``."""
    data, problem = _verified_bytes(path)
    if problem is not None:
        return None, problem
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return None, f"cannot be read ({first[:200]})"
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        return None, "is not a distilens checkpoint"
    return state, None


def _link_over(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` (``src`` stays), replacing ``dst`` atomically."""
    if not src.is_file():  # no digest beside the current file: none may describe the previous one
        dst.unlink(missing_ok=True)
        return
    tmp = dst.with_name(f".{dst.name}.link")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # a file system without hard links: copy the bytes instead
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


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
