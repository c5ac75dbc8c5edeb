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
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import DiskFullError, RunFolderError
from .io import atomic_write_json, write_error
from .limits import MAX_CONFIG_BYTES, MAX_JSON_BYTES, check_safetensors, csv_reader, load_yaml, read_json, read_text

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid in the lock file is all there is
    fcntl = None  # type: ignore[assignment]

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

MARKER = ".distilens-run"
MARKER_FORMAT = "distilens-run/1"
_ROLE = r"(teacher|student|baseline)"
#: Every file a run, ``explain``, ``export`` (default --out) or ``predict --explain`` (default
#: heatmaps) writes into a run folder, as paths relative to it.
RUN_FILES = re.compile(
    rf"""(
        {re.escape(MARKER)} | config\.yaml | metrics\.json | history\.csv | report\.html
      | {_ROLE}\.(safetensors|json) | teacher\.torchscript
      | predictions\.safetensors | explanations\.safetensors | explanations/text\.json
      | preprocessing\.json | (teacher_)?tokenizer\.json
      | student(-int8)?\.(onnx|pt)
      | heatmaps/\d+\.png
      | cache/softlabels-[0-9a-f]+\.safetensors
      | checkpoints/{_ROLE}(\.prev)?\.pt(\.sha256)? | checkpoints/\.{_ROLE}(\.prev)?\.pt\.link
      | tb/{_ROLE}/events\.out\.tfevents\.[^/]+
      | ([^/]+/)*\.[^/]+\.tmp
    )""",
    re.X,
)


@dataclass
class _Contents:
    """What a folder is: ``absent`` (missing or empty), ``run`` or ``other`` (with what is not ours)."""

    kind: str
    foreign: list[str] = field(default_factory=list)
    state: str | None = None  # the marker's state, None for a folder without one

    def listing(self, limit: int = 3) -> str:
        shown = ", ".join(self.foreign[:limit])
        return shown + (" and more" if len(self.foreign) > limit else "")


def _walk(folder: Path) -> Iterator[tuple[str, bool]]:
    """``(path relative to folder, is a plain file)`` for every entry but folders; symlinks are not followed."""
    for root, dirs, names in os.walk(folder):
        base = Path(root)
        for name in sorted([*names, *(d for d in dirs if (base / d).is_symlink())]):
            p = base / name
            yield p.relative_to(folder).as_posix(), p.is_file() and not p.is_symlink()
        dirs[:] = sorted(d for d in dirs if not (base / d).is_symlink())


def _marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER
    if not path.is_file() or path.is_symlink():
        return None
    try:
        meta = read_json(path, error=RunFolderError, max_bytes=16 * 1024**2)
    except RunFolderError:
        return None
    if not isinstance(meta, dict) or meta.get("format") != MARKER_FORMAT:
        return None
    return meta


def _legacy_config_ok(folder: Path) -> bool:
    """A folder without a marker: its config.yaml must be a YAML mapping of run config keys."""
    path = folder / "config.yaml"
    if not path.is_file() or path.is_symlink():
        return False
    try:
        raw = load_yaml(read_text(path, str(path), max_bytes=MAX_CONFIG_BYTES, error=RunFolderError), str(path),
                        error=RunFolderError)
    except RunFolderError:
        return False
    keys = {"name", "seed", "data", "teacher", "student", "distill", "explain", "report", "runtime"}
    return isinstance(raw, dict) and bool(raw) and set(raw) <= keys


def _contents(folder: Path, enough: int = 4) -> _Contents:
    """Classify ``folder`` (never following a symlink out of it); stops after ``enough`` foreign entries."""
    if not folder.exists() and not folder.is_symlink():
        return _Contents("absent")
    if folder.is_symlink() or not folder.is_dir():
        return _Contents("other", [folder.name])
    meta = _marker(folder)
    listed = set(meta.get("files") or []) if meta else set()
    foreign, empty = [], True
    for rel, plain in _walk(folder):
        empty = False
        if not plain or (rel not in listed and not RUN_FILES.fullmatch(rel)):
            foreign.append(rel)
            if len(foreign) >= enough:
                break
    if empty:
        return _Contents("absent")
    if meta is None and not foreign and not _legacy_config_ok(folder):
        foreign = ["no .distilens-run marker and no readable config.yaml"]
    if foreign:
        return _Contents("other", foreign)
    return _Contents("run", state=str(meta.get("state")) if meta else None)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a distilens run folder that holds nothing distilens did not write."""
    return _contents(Path(path)).kind == "run"


def check_run_folder(path: str | Path) -> Path:
    """The run folder at ``path`` for a command that reads it (explain, report, export, predict).

    Every file a command may read is first read through the bounded readers
    (:func:`check_files`), so a damaged or hostile folder is one line before any command
    uses it.

    Raises:
        RunFolderError: not a folder, no config.yaml, a symlink inside, or a file that is
            not what a run writes.
    """
    run_dir = Path(path)
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
        raise RunFolderError(f"'{run_dir}' is not a run folder (no config.yaml); give the folder `distilens run` wrote")
    check_files(run_dir)
    return run_dir


_OBJECTS = ("metrics.json", "teacher.json", "student.json", "baseline.json", "preprocessing.json", "tokenizer.json",
            "teacher_tokenizer.json")


def check_files(folder: Path) -> None:
    """Read what a run folder's commands (and ``--resume``) read, through the bounded readers.

    config.yaml must be a YAML mapping; metrics, model, preprocessing and tokenizer files
    JSON objects; explanations/text.json and checkpoint digests JSON; history.csv a table of
    numbers; every .safetensors complete. A symlink or any other non-file inside is refused
    (commands write into the folder and must not write through a link).

    Raises:
        RunFolderError: one line naming the file and saying to run the config again.
    """
    fix = "the run folder is damaged or was changed by hand: run its config again with --overwrite"
    try:
        for rel, plain in _walk(folder):
            if not plain:
                raise RunFolderError(f"'{folder / rel}' is a symlink or not a regular file; a run folder holds files only")
        if (folder / "config.yaml").is_file():
            where = f"'{folder / 'config.yaml'}'"
            cfg = load_yaml(read_text(folder / "config.yaml", where, max_bytes=MAX_CONFIG_BYTES, error=RunFolderError),
                            where, error=RunFolderError)
            if not isinstance(cfg, dict):
                raise RunFolderError(f"{where} is a YAML {type(cfg).__name__}, not a config mapping")
        for name in _OBJECTS:
            if (folder / name).is_file():
                obj = read_json(folder / name, f"'{folder / name}'", error=RunFolderError)
                if not isinstance(obj, dict):
                    raise RunFolderError(f"'{folder / name}' is a JSON {type(obj).__name__}, not an object")
        for extra in [folder / "explanations" / "text.json", *sorted(folder.glob("checkpoints/*.sha256"))]:
            if extra.is_file():
                read_json(extra, error=RunFolderError)
        for tensors in [*sorted(folder.glob("*.safetensors")), *sorted(folder.glob("cache/*.safetensors"))]:
            check_safetensors(tensors, error=RunFolderError)
        if (folder / "history.csv").is_file():
            _check_history(folder / "history.csv")
    except RunFolderError as exc:
        raise RunFolderError(f"{exc}; {fix}") from None


def _check_history(path: Path) -> None:
    where = f"'{path}'"
    reader = csv_reader(read_text(path, where, max_bytes=MAX_JSON_BYTES, error=RunFolderError).splitlines(), where,
                        error=RunFolderError)
    header = next(reader, [])
    for row in reader:
        for column, cell in zip(header, row):
            if column != "model" and cell:
                try:
                    float(cell)
                except ValueError:
                    raise RunFolderError(f"{where} line {reader.line_num}: '{cell[:40]}' in column '{column[:40]}' "
                                         "is not a number") from None


# --------------------------------------------------------------------------- the lock


class _Lock:
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
    _lock: _Lock | None = None
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
        self._lock = _Lock(self.final.parent / f".{self.final.name}.lock")
        try:
            self._lock.acquire(self.final)
        except BaseException:
            self._lock = None
            self._remove_made()
            raise
        _OPEN[self.final] = self

    def _check(self, *, overwrite: bool, resume: bool, config_yaml: str) -> None:
        final, staging = self.final, self.staging
        old, partial = _contents(final), _contents(staging)
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
                if _contents(self.staging).kind == "other":  # checked in prepare; checked again before deleting
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
            old = _contents(self.final)
            if old.kind == "other":
                raise RunFolderError(
                    f"'{self.final}' now holds files distilens did not write ({old.listing()}), so it was not replaced; "
                    f"the new run is in '{self.staging}'"
                )
            files = [rel for rel, plain in _walk(self.staging) if plain]
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
