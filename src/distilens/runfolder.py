"""The run folder: staged writes so that a failed run never damages what the user had.

A run writes into a hidden staging folder beside its destination
(``runs/.NAME.partial``) and moves it into place only when it has finished. An existing
run folder is replaced only with ``overwrite=True`` (or continued with ``resume=True``),
and even then only at the very end, after the new run succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import RunFolderError

__all__ = ["RunFolder"]


@dataclass
class RunFolder:
    """Where a run ends up (``final``) and where it is written meanwhile (``staging``)."""

    final: Path
    staging: Path
    continued: bool = False  # the staging folder holds an earlier interrupted run's work

    @classmethod
    def prepare(
        cls, final: str | Path, *, overwrite: bool, resume: bool, config_yaml: str
    ) -> "RunFolder":
        """Check that the run may use ``final`` and return the folder pair (nothing is created yet).

        Raises:
            RunFolderError: the folder exists without ``overwrite``/``resume``, a file is in
                the way, the parent cannot be written, or ``resume`` finds a changed config.
        """
        final = Path(final).expanduser().absolute()
        staging = final.parent / f".{final.name}.partial"
        if overwrite and resume:
            raise RunFolderError("--overwrite and --resume exclude each other; choose one")
        if final.exists() and not final.is_dir():
            raise RunFolderError(f"'{final}' exists and is not a folder; choose another --out or name")
        _check_writable(final.parent)
        exists = final.is_dir() and any(final.iterdir())
        if resume:
            source = staging if staging.is_dir() else final if exists else None
            if source is None:
                raise RunFolderError(f"--resume: there is no earlier run at '{final}'; run without --resume")
            old = source / "config.yaml"
            if old.is_file() and old.read_text(encoding="utf-8") != config_yaml:
                raise RunFolderError(
                    f"--resume: the config differs from the one '{final.name}' was run with "
                    f"({old}); resume with the same config, or use --overwrite to start again"
                )
        elif exists and not overwrite:
            raise RunFolderError(
                f"run folder '{final}' already exists; pass --overwrite to replace it, "
                "--resume to continue it, or choose another --out or name"
            )
        return cls(final, staging)

    def open(self, *, resume: bool) -> Path:
        """Create the staging folder (continuing an earlier one when resuming)."""
        self.continued = resume and self.staging.is_dir()
        if resume and not self.staging.is_dir() and self.final.is_dir():
            shutil.copytree(self.final, self.staging)
        elif not resume and self.staging.exists():
            shutil.rmtree(self.staging)  # our own leftover of a crashed run, never user data
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging

    def discard(self) -> None:
        """Remove the staging folder after a user error, so no partial output is left.

        An interrupted run's staging folder that this run continued is kept for --resume.
        """
        if self.staging.exists() and not self.continued:
            shutil.rmtree(self.staging)

    def commit(self) -> Path:
        """Move the finished staging folder into place, replacing an older run last of all."""
        trash = None
        if self.final.exists():
            trash = self.final.parent / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, trash)
        os.replace(self.staging, self.final)
        if trash is not None:
            shutil.rmtree(trash)
        return self.final


def _check_writable(parent: Path) -> None:
    probe_dir = parent
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
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
