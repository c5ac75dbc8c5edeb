"""Safe model files: weights in safetensors, the architecture in a JSON file beside them.

Nothing here unpickles: a ``.safetensors`` file holds only tensors, and the JSON names a
registered architecture and its arguments.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from ..io import atomic_write, atomic_write_json
from .zoo import build_model, count_params

__all__ = ["save_model", "load_model", "state_dict_digest", "tensors_digest"]

_FORMAT = "distilens-model/1"
# The fix to suggest when a .safetensors file cannot be parsed.
UNREADABLE_SAFETENSORS = (
    "it is not a complete safetensors file (cut short, or another format); save or download it again"
)


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a model's state dict."""
    return tensors_digest(model.state_dict())


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of named tensors (order-independent)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(
    model: nn.Module, path: str | Path, *, arch: str, args: dict[str, Any], spec: InputSpec
) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json, both atomically.

    Args:
        model: The module whose state dict is saved.
        path: Destination of the weights, e.g. ``runs/x/student.safetensors``.
        arch: Registered architecture name used to rebuild it.
        args: The architecture's arguments.
        spec: Input spec of the data it was trained on (shape, classes, normalisation).
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": _FORMAT}))
    meta = {
        "format": _FORMAT,
        "arch": arch,
        "args": args,
        "input_spec": spec.to_dict(),
        "params": count_params(model),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns ``(model, meta)``.

    Raises:
        ModelError: missing or tampered files, unknown architecture, mismatching weights.
    """
    path = Path(path)
    meta_path = path.with_suffix(".json")
    for p in (path, meta_path):
        if not p.is_file():
            raise ModelError(f"model file '{p}' does not exist; check the path")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"'{meta_path}' is not valid JSON ({exc}); re-save the model") from None
    if meta.get("format") != _FORMAT:
        raise ModelError(f"'{meta_path}' is not a distilens model description (format {meta.get('format')!r})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get("sha256") and digest != meta["sha256"]:
        raise ModelError(f"'{path}' does not match the checksum in '{meta_path.name}'; the file was changed or cut short")
    spec = InputSpec.from_dict(meta["input_spec"])
    model = build_model(meta["arch"], spec, **meta.get("args", {}))
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read weights '{path}': {exc}; {UNREADABLE_SAFETENSORS}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"weights in '{path}' do not fit architecture '{meta['arch']}': {first}") from None
    return model.eval(), meta
