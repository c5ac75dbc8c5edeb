"""The teacher's half of the explain stage, kept on disk by content.

A run explains the teacher and its students on the same samples. The teacher's part — its
maps, its deletion/insertion curves, its sanity check — depends only on the teacher's
weights, the samples as the teacher reads them and the explain settings; for a transformer
teacher it is almost all of the stage's time. Runs that share a teacher (several students,
a rerun) read it back instead of computing it again, as they read the soft labels.

Every entry is named by a SHA-256 over the teacher's state dict and module tree, the inputs,
the targets, the settings that shape the result and the distilens version, so a changed
weight, sample, option or explainer is a miss, never a stale hit. Entries are data: maps in safetensors, scores in JSON, both written atomically and
read through the bounded readers; an entry that is cut short, too large or not what its name
says is warned about and computed again.

Example:
    >>> memo = TeacherMemo(teacher, directories=["cache"], save_to=["runs/a/cache"])
    >>> maps = memo.tensor("maps", inputs, targets, {"method": "integrated_gradients"}, lambda: attribute(...))
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .._version import __version__
from ..errors import DistilensError
from ..io import atomic_write
from ..limits import check_safetensors, read_json
from ..models.io import state_dict_digest, tensors_digest

__all__ = ["TeacherMemo"]

_VERSION = "distilens-explain-memo/1"


class TeacherMemo:
    """Read-or-compute store for the teacher's explanations, keyed by content.

    Args:
        teacher: The explained teacher; its state dict and module tree enter every key.
        directories: Where to look for entries, in order (the run's cache, ``distill.cache_dir``).
        save_to: Where every entry used (computed or read) is written; missing folders are made.

    Attributes:
        hits, misses: Entries read back and entries computed so far.
    """

    def __init__(self, teacher: nn.Module, *, directories: Sequence[str | Path], save_to: Sequence[str | Path]) -> None:
        self._teacher = hashlib.sha256(
            f"{__version__}|{type(teacher).__qualname__}|{teacher!r}|{state_dict_digest(teacher)}".encode()
        ).hexdigest()
        self._directories = [Path(d) for d in directories]
        self._save_to = [Path(d) for d in save_to]
        self.hits = 0
        self.misses = 0

    def key(self, part: str, inputs: Tensor, targets: Tensor, settings: Mapping[str, Any]) -> str:
        """The entry name of ``part`` for these inputs (tensors included in ``settings`` are hashed by content)."""
        h = hashlib.sha256(f"{_VERSION}|{part}|{self._teacher}|".encode())
        tensors = {"inputs": inputs, "targets": targets}
        plain: dict[str, Any] = {}
        for name, value in sorted(settings.items()):
            if isinstance(value, Tensor):
                tensors[f"setting/{name}"] = value
            else:
                plain[name] = value
        h.update(tensors_digest(tensors).encode())
        h.update(json.dumps(plain, sort_keys=True, default=repr).encode())
        return h.hexdigest()

    def tensor(
        self, part: str, inputs: Tensor, targets: Tensor, settings: Mapping[str, Any], compute: Callable[[], Tensor]
    ) -> Tensor:
        """The stored tensor of this entry, else ``compute()`` (stored for next time)."""
        name = f"explain-{self.key(part, inputs, targets, settings)}.safetensors"

        def read(path: Path) -> Tensor | None:
            try:
                check_safetensors(path, error=DistilensError)  # header against size, before torch maps it
                value = load_file(str(path)).get("value")
            except (DistilensError, SafetensorError, OSError) as exc:
                return _broken(path, str(exc))
            if value is None or not value.is_floating_point() or value.shape[:1] != inputs.shape[:1]:
                return _broken(path, f"'{path}' holds no maps for these {len(inputs)} samples")
            return value

        value, source = self._read(name, read)
        if value is None:
            value = compute().detach().cpu().contiguous()
            self.misses += 1
        self._write(name, lambda tmp: save_file({"value": value}, tmp), source)
        return value

    def record(
        self, part: str, inputs: Tensor, targets: Tensor, settings: Mapping[str, Any],
        compute: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """The stored JSON record of this entry, else ``compute()`` (stored for next time).

        A computed record is returned as it reads back (NaN as ``None``, tuples as lists), so
        a run gives the same numbers whether the entry was computed or read.
        """
        key = self.key(part, inputs, targets, settings)
        name = f"explain-{key}.json"

        def read(path: Path) -> dict[str, Any] | None:
            try:
                stored = read_json(path, error=DistilensError)  # bounded size and depth
            except DistilensError as exc:
                return _broken(path, str(exc))
            if not (isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("value"), dict)):
                return _broken(path, f"'{path}' is not the record it is named after")
            return stored["value"]

        value, source = self._read(name, read)
        if value is None:
            value = json.loads(_dumps(compute()))
            self.misses += 1
        text = _dumps({"key": key, "value": value})
        self._write(name, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), source)
        return value

    def _read(self, name: str, read: Callable[[Path], Any]) -> tuple[Any, Path | None]:
        """The first readable entry ``name`` in the directories and its folder (a hit), else ``(None, None)``."""
        for folder in self._directories:
            path = folder / name
            value = read(path) if path.is_file() else None
            if value is not None:
                self.hits += 1
                return value, folder
        return None, None

    def _write(self, name: str, write: Callable[[str], None], source: Path | None) -> None:
        """Write the entry into every ``save_to`` folder but the one it was read from."""
        for folder in self._save_to:
            if source is None or folder.resolve() != source.resolve():
                atomic_write(folder / name, write)

    @property
    def status(self) -> str:
        """``"hit"`` (all read), ``"computed"`` (none read), ``"partial"``, or ``"unused"``."""
        if self.hits and not self.misses:
            return "hit"
        if self.misses and not self.hits:
            return "computed"
        return "partial" if self.hits else "unused"


def _broken(path: Path, why: str) -> None:
    """Warn that an entry cannot be used (it is computed again and replaced); no value."""
    warnings.warn(f"teacher explanation cache: {why}; computing it again", stacklevel=3)
    return None


def _dumps(obj: Any) -> str:
    """JSON with NaN and infinities as ``null`` (scores of undefined samples)."""
    return json.dumps(_finite(obj), sort_keys=True) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _finite(obj.tolist())
    return obj
