"""The run folder: staged writes, a lock, and a marker, so that a run never damages what the user had.

A run writes into a hidden staging folder beside its destination (``runs/.NAME.partial``)
and moves it into place only when it has finished. An existing folder is replaced only with
``overwrite=True`` (or continued with ``resume=True``), only at the very end, after the
new run succeeded, and only when it is a distilens run folder holding nothing else:

* **The marker.** Every run folder holds ``.distilens-run``: JSON with the format
  (``distilens-run/1``), the state (``staging`` while it is written, ``finished`` once it is
  moved into place) and, when finished, the list of the files it was written with. A folder
  is a run folder when its marker is valid, or, for folders written before markers existed,
  when it holds a ``config.yaml`` that is a YAML mapping and every file in it is one a run
  or a later ``explain``/``export``/``predict`` writes (:data:`RUN_FILES`). Anything else,
  a file the user added included, makes the folder *not* ours: ``--overwrite`` refuses it
  and names what it found, and nothing in it is touched.
* **The lock.** ``runs/.NAME.lock`` holds the pid and command of the run using the folder,
  under an exclusive ``flock`` that the kernel releases when the process ends: a second
  run into the same folder stops with one line naming the first; a lock file left by a
  process that is gone is stale and taken over.
* **Symlinks.** ``--out`` is resolved (a symlinked run folder is written where it points);
  a staging folder or lock that is a symlink is refused, never followed or deleted.

Example:
    >>> folder = RunFolder.prepare("runs/x", overwrite=False, resume=False, config_yaml=text)
    >>> staging = folder.open(resume=False)   # ... write the run into staging ...
    >>> folder.commit()
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import DiskFullError, RunFolderError
from ..io import atomic_write_json, nearest_existing, write_error
from ..limits import MAX_CONFIG_BYTES, read_text
from .contents import MARKER, MARKER_FORMAT, RUN_FILES, check_files, check_run_folder, classify, is_run_folder, walk
from .lock import RunLock

__all__ = [
    "RunFolder",
    "MARKER",
    "MARKER_FORMAT",
    "RUN_FILES",
    "is_run_folder",
    "check_run_folder",
    "check_files",
    "held_run_folders",
    "release_all",
    "is_disk_full",
]

_OPEN: dict[Path, "RunFolder"] = {}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full."""
    return isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))


@contextmanager
def held_run_folders() -> Iterator[None]:
    """Release the run folders this block prepared, however it ends; their staging folders too when the disk filled up.

    Example:
        >>> with held_run_folders():
        ...     folder = RunFolder.prepare(...)   # ... the run ...
    """
    try:
        yield
    except BaseException as exc:
        release_all(discard=is_disk_full(exc))
        raise
    release_all()


def release_all(*, discard: bool = False) -> None:
    """Release every run folder still held by this process (the CLI calls it on the way out).

    Args:
        discard: Also remove their staging folders (not those of a continued run), e.g.
            after the disk filled up.
    """
    for folder in list(_OPEN.values()):
        if discard:
            folder.discard()
        folder.release()


# --------------------------------------------------------------------------- the run folder


@dataclass
class RunFolder:
    """Where a run ends up (``final``) and where it is written meanwhile (``staging``)."""

    final: Path
    staging: Path
    continued: bool = False  # the staging folder holds an earlier interrupted run's work
    _lock: RunLock | None = None
    _made: list[Path] = field(default_factory=list)  # parent folders this run created

    @classmethod
    def prepare(
        cls, final: str | Path, *, overwrite: bool, resume: bool, config_yaml: str, lock: bool = True
    ) -> "RunFolder":
        """Check that the run may use ``final``, lock it, and return the folder pair (no staging yet).

        Args:
            final: The run folder (``--out``); a symlink is resolved.
            overwrite: Replace an existing run folder once this run succeeded.
            resume: Continue the run at ``final`` (its staging folder, or the finished folder).
            config_yaml: This run's resolved config: ``resume`` requires the same.
            lock: Take the run folder's lock (rank 0 of a data-parallel run alone does).

        Raises:
            RunFolderError: ``final`` is not a distilens run folder, exists without
                ``overwrite``/``resume``, is in use by another run, a file is in the way, the
                parent cannot be written, or ``resume`` finds no run or a changed config.
        """
        if overwrite and resume:
            raise RunFolderError("--overwrite and --resume exclude each other; choose one")
        final = _resolve(Path(final))
        staging = final.parent / f".{final.name}.partial"
        if final.exists() and not final.is_dir():
            raise RunFolderError(f"'{final}' exists and is not a folder; choose another --out or name")
        _check_writable(final.parent)
        folder = cls(final, staging)
        if lock:
            folder._take_lock()
        try:
            folder._check(overwrite=overwrite, resume=resume, config_yaml=config_yaml)
        except BaseException:
            folder.release()
            raise
        return folder

    def _take_lock(self) -> None:
        previous = _OPEN.get(self.final)
        if previous is not None:  # an earlier run of this process that ended without commit/discard
            previous.release()
        missing = self.final.parent
        while not missing.exists():
            self._made.append(missing)
            missing = missing.parent
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.final.parent / f".{self.final.name}.lock")
        try:
            self._lock.acquire(self.final)
        except BaseException:
            self._lock = None
            self._remove_made()
            raise
        _OPEN[self.final] = self

    def _check(self, *, overwrite: bool, resume: bool, config_yaml: str) -> None:
        final, staging = self.final, self.staging
        old, partial = classify(final), classify(staging)
        if partial.kind == "other":
            raise RunFolderError(
                f"'{staging}' is in the way and was not written by distilens (it holds {partial.listing()}); "
                "move it away, or choose another --out"
            )
        if resume:
            source = staging if partial.kind == "run" else final if old.kind == "run" else None
            if source is None:
                held = f" ('{final}' holds files distilens did not write: {old.listing()})" if old.kind == "other" else ""
                raise RunFolderError(f"--resume: there is no earlier run at '{final}'{held}; run without --resume")
            check_files(source)
            previous = read_text(source / "config.yaml", f"--resume: the config of the earlier run, '{source / 'config.yaml'}',",
                                 max_bytes=MAX_CONFIG_BYTES, error=RunFolderError) if (source / "config.yaml").is_file() else None
            if previous is not None and previous != config_yaml:
                raise RunFolderError(
                    f"--resume: the config differs from the one '{final.name}' was run with "
                    f"({source / 'config.yaml'}); resume with the same config, or use --overwrite to start again"
                )
            return
        if old.kind == "other":
            raise RunFolderError(
                f"'{final}' is not a distilens run folder (it holds {old.listing()}); distilens never replaces "
                "or deletes it, even with --overwrite: choose another --out"
            )
        if old.kind == "run" and not overwrite:
            raise RunFolderError(
                f"run folder '{final}' already exists; pass --overwrite to replace it, "
                "--resume to continue it, or choose another --out or name"
            )

    def open(self, *, resume: bool) -> Path:
        """Create the staging folder (continuing an earlier one when resuming)."""
        self.continued = resume and self.staging.is_dir()
        try:
            if resume and not self.staging.is_dir() and self.final.is_dir():
                shutil.copytree(self.final, self.staging, symlinks=True)
            elif not resume and self.staging.exists():
                if classify(self.staging).kind == "other":  # checked in prepare; checked again before deleting
                    raise RunFolderError(f"'{self.staging}' was not written by distilens; move it away")
                shutil.rmtree(self.staging)  # our own leftover of a crashed run
            self.staging.mkdir(parents=True, exist_ok=True)
            if not (self.staging / MARKER).is_file():
                atomic_write_json(self.staging / MARKER, {"format": MARKER_FORMAT, "state": "staging"})
        except OSError as exc:
            mapped = write_error(exc, self.staging)
            if mapped is None:
                raise
            self.discard()
            raise mapped from None
        except DiskFullError:
            self.discard()
            raise
        return self.staging

    def discard(self) -> None:
        """Remove the staging folder after a user error, so no partial output is left; release the lock.

        An interrupted run's staging folder that this run continued is kept for --resume.
        """
        if self.staging.is_dir() and not self.staging.is_symlink() and not self.continued:
            shutil.rmtree(self.staging)
        self.release()

    def release(self) -> None:
        """Give up the lock (the staging folder, if any, stays for --resume)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._remove_made()
        if _OPEN.get(self.final) is self:
            del _OPEN[self.final]

    def _remove_made(self) -> None:
        for made in self._made:  # parents this run created, when nothing else was put there
            if made.is_dir() and not any(made.iterdir()):
                made.rmdir()
        self._made = []

    def commit(self) -> Path:
        """Move the finished staging folder into place, replacing an older run last of all.

        The older folder is checked again first (files may have been added while this run
        trained): if it now holds anything distilens did not write, it is kept and the new
        run stays in the staging folder.
        """
        try:
            old = classify(self.final)
            if old.kind == "other":
                raise RunFolderError(
                    f"'{self.final}' now holds files distilens did not write ({old.listing()}), so it was not replaced; "
                    f"the new run is in '{self.staging}'"
                )
            files = [rel for rel, plain in walk(self.staging) if plain]
            try:
                atomic_write_json(self.staging / MARKER, {"format": MARKER_FORMAT, "state": "finished",
                                                          "files": sorted({*files, MARKER})})
            except DiskFullError:
                self.continued = False
                self.discard()
                raise
            trash = None
            if self.final.exists():
                trash = self.final.parent / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(self.final, trash)
            os.replace(self.staging, self.final)
            if trash is not None:
                shutil.rmtree(trash)
            return self.final
        finally:
            self.release()


def _resolve(final: Path) -> Path:
    final = final.expanduser()
    try:
        resolved = final.resolve()
    except (OSError, RuntimeError) as exc:
        raise RunFolderError(f"--out '{final}' cannot be resolved ({exc}); give a plain folder path") from None
    if resolved.name in ("", ".", "..") or resolved == resolved.parent:
        raise RunFolderError(f"--out '{final}' is the root of the file system; give a folder for the run")
    return resolved


def _check_writable(parent: Path) -> None:
    probe_dir = nearest_existing(parent)
    if not probe_dir.is_dir():
        raise RunFolderError(f"'{probe_dir}' is a file, so the run folder cannot be made under it; choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".distilens-write-test-", dir=probe_dir)
    except OSError as exc:
        raise RunFolderError(
            f"cannot write in '{probe_dir}' ({exc.strerror}); choose a writable --out folder"
        ) from None
    os.close(fd)
    os.unlink(probe)
