"""The run folder's lock: ``.NAME.lock`` beside it, held with an exclusive ``flock``.

The kernel releases a ``flock`` when its process ends, so a lock file left by a killed run
is stale by construction: the next run takes it over. The file holds the owner's pid, start
time and command, which a refused second run names.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..errors import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid in the lock file is all there is
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock"]


class RunLock:
    """An exclusive lock on a run folder: ``.NAME.lock`` beside it, held with ``flock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, final: Path) -> None:
        if self.path.is_symlink():
            raise RunFolderError(f"'{self.path}' is a symlink; remove it (distilens keeps its lock file there)")
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as exc:
                raise RunFolderError(f"cannot create the lock file '{self.path}' ({exc.strerror}); remove what is "
                                     "in the way, or choose another --out") from None
            if not self._try(fd, final):
                continue  # the file was replaced between open and lock: try the new one
            self.fd = fd
            break
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "command": " ".join(["distilens", *sys.argv[1:]])[:300]}).encode())

    def _try(self, fd: int, final: Path) -> bool:
        if fcntl is None:  # pragma: no cover
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise RunFolderError(
                f"run folder '{final}' is in use by another distilens run ({owner}); wait for it to finish, "
                "or choose another --out"
            ) from None
        except OSError:  # a file system without flock (some network mounts): the pid in the file is all there is
            return True
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
        return same

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # unlinked while still held: a waiting run re-opens the path
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


def _owner(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"pid {int(info['pid'])}, started {info.get('started', '?')}: {str(info.get('command', '?'))[:200]}"
    except (ValueError, KeyError, TypeError, OSError):
        return "its lock file is being written"
