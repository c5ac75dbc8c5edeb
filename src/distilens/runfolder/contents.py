"""What a run folder holds: its marker, the files a run writes, and the checks on them.

A folder is a run folder when its ``.distilens-run`` marker is valid, or, for folders
written before markers existed, when it holds a ``config.yaml`` that is a YAML mapping of
run config keys; either way every file in it must be one the run wrote (the marker's list)
or one a run or a later command writes (:data:`RUN_FILES`). :func:`check_files` reads what
the commands read through the bounded readers (:mod:`distilens.limits`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import RunFolderError
from ..limits import MAX_CONFIG_BYTES, MAX_JSON_BYTES, check_safetensors, csv_reader, load_yaml, read_json, read_text

__all__ = ["MARKER", "MARKER_FORMAT", "RUN_FILES", "Contents", "classify", "walk", "is_run_folder", "check_run_folder",
           "check_files"]

MARKER = ".distilens-run"
MARKER_FORMAT = "distilens-run/1"
_ROLE = r"(teacher|student|baseline|plain_kd|teacher_reseed|init)"  # evidence (issue 15): controls and references
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
      | cache/softlabels-[0-9a-f]+\.safetensors | cache/explain-[0-9a-f]+\.(safetensors|json)
      | checkpoints/{_ROLE}(\.prev)?\.pt(\.sha256)? | checkpoints/\.{_ROLE}(\.prev)?\.pt\.link
      | tb/{_ROLE}/events\.out\.tfevents\.[^/]+
      | ([^/]+/)*\.[^/]+\.tmp
    )""",
    re.X,
)


@dataclass
class Contents:
    """What a folder is: ``absent`` (missing or empty), ``run`` or ``other`` (with what is not ours)."""

    kind: str
    foreign: list[str] = field(default_factory=list)
    state: str | None = None  # the marker's state, None for a folder without one

    def listing(self, limit: int = 3) -> str:
        shown = ", ".join(self.foreign[:limit])
        return shown + (" and more" if len(self.foreign) > limit else "")


def walk(folder: Path) -> Iterator[tuple[str, bool]]:
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


def classify(folder: Path, enough: int = 4) -> Contents:
    """Classify ``folder`` (never following a symlink out of it); stops after ``enough`` foreign entries."""
    if not folder.exists() and not folder.is_symlink():
        return Contents("absent")
    if folder.is_symlink() or not folder.is_dir():
        return Contents("other", [folder.name])
    meta = _marker(folder)
    listed = set(meta.get("files") or []) if meta else set()
    foreign, empty = [], True
    for rel, plain in walk(folder):
        empty = False
        if not plain or (rel not in listed and not RUN_FILES.fullmatch(rel)):
            foreign.append(rel)
            if len(foreign) >= enough:
                break
    if empty:
        return Contents("absent")
    if meta is None and not foreign and not _legacy_config_ok(folder):
        foreign = ["no .distilens-run marker and no readable config.yaml"]
    if foreign:
        return Contents("other", foreign)
    return Contents("run", state=str(meta.get("state")) if meta else None)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a distilens run folder that holds nothing distilens did not write."""
    return classify(Path(path)).kind == "run"


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
        for rel, plain in walk(folder):
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
        for extra in [folder / "explanations" / "text.json", *sorted(folder.glob("checkpoints/*.sha256")),
                      *sorted(folder.glob("cache/explain-*.json"))]:
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
