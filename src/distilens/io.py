"""Atomic file writes: write a temporary file in the same folder, fsync, then rename.

A reader (or a crash) sees either the old file or the new one, never half of one. A write
that fails because the disk is full, or the place cannot be written, is a one-line
:class:`~distilens.errors.DistilensError` naming the device and the file (the temporary
file is removed either way).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import DiskFullError, DistilensError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_error",
    "mount_point",
    "nearest_existing",
    "spreadsheet_safe",
]

_FULL = (errno.ENOSPC, errno.EDQUOT)
# The place cannot take the file: no permission, read-only, a file where a folder must be, a name too long.
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG)


def nearest_existing(path: str | Path) -> Path:
    """``path`` itself when it exists, else its nearest existing ancestor (where it would be created)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds ``path`` (or would hold it)."""
    p = nearest_existing(os.path.abspath(path))
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def write_error(exc: OSError, path: str | Path) -> DistilensError | None:
    """The one-line error for an ``OSError`` raised while writing ``path``, or ``None`` (a bug: keep it).

    Example:
        >>> write_error(OSError(errno.ENOSPC, "No space left on device"), "runs/x/a.bin")
        DiskFullError("no space left on / while writing 'runs/x/a.bin'; ...")
    """
    if exc.errno in _FULL:
        return DiskFullError(
            f"no space left on {mount_point(path)} while writing '{path}'; free some space there, "
            "or choose an --out on another disk (the partial output was removed)"
        )
    if exc.errno in _DENIED:
        return DistilensError(f"cannot write '{path}' ({exc.strerror}); choose a place you can write to")
    return None


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` over ``path``; the temp file never lingers.

    Raises:
        DistilensError: ``path`` is a folder, the disk is full (:class:`DiskFullError`), or
            the place cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise DistilensError(f"cannot write '{path}': it is a folder; give the path of a file")
    ancestor = nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise DistilensError(f"cannot write '{path}': '{ancestor}' is a file, not a folder; choose another place")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        mapped = write_error(exc, path)
        if mapped is None:
            raise
        raise mapped from None
    except DistilensError:
        raise
    except Exception as exc:
        # Writers that wrap the OS error in their own (torch.save: RuntimeError, safetensors:
        # SafetensorError): a full disk is recognised by the free space left.
        if not _is_full(path.parent):
            raise
        raise write_error(OSError(errno.ENOSPC, "No space left on device"), path) from exc  # type: ignore[misc]
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """A text cell for a CSV a spreadsheet may open: one that starts like a formula gets a leading ``'``.

    Class names and file names come from the user's data; ``=HYPERLINK(...)`` as a class name
    would otherwise run as a formula when the predictions are opened (CSV injection).
    Numbers are written by the caller as numbers, not through this.

    Example:
        >>> spreadsheet_safe("=1+2"), spreadsheet_safe("cat")
        ("'=1+2", 'cat')
    """
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _is_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # AttributeError: no statvfs on this platform
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
