"""What the report draws, as objects: handed over by a run, or read back once from its folder.

A run builds :class:`ReportInputs` from its stage results (nothing is read back from disk);
``distilens report RUN`` builds the same object with :meth:`ReportInputs.from_folder`, which
reads each file of the run folder once and lists the ones that are missing.

Example:
    >>> inputs = ReportInputs.from_folder("runs/digits-demo")
    >>> inputs.metrics["student"]["accuracy"], inputs.missing
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..config import RunConfig, load_config
from ..data import InputSpec
from ..explain.comparison import Comparison
from ..explain.text_payload import TEXT_PAYLOAD
from ..io import atomic_write, atomic_write_text
from ..models.io import load_model

__all__ = ["Predictions", "Explanations", "ReportInputs", "read_history", "write_history", "EXPLANATION_MAPS", "PREDICTIONS", "HISTORY"]

#: Files of a run folder the report reads.
EXPLANATION_MAPS = "explanations.safetensors"
PREDICTIONS = "predictions.safetensors"
HISTORY = "history.csv"
#: Student architectures the report draws (and so reads back from the folder).
DRAWN_STUDENTS = ("soft_tree",)


@dataclass
class Predictions:
    """The test logits of every model of a run, computed once and reused (metrics, file, report).

    Attributes:
        targets: (N,) test labels.
        logits: Role (``teacher``, ``student``, ``baseline``) → (N, C) test logits, on the CPU.
        train_targets: (M,) training labels.
        train_teacher: (M, C) the teacher's soft labels (logits) of the training split; with K
            stored augmented views, of every view (M = K·N, view-major, labels repeated).

    Example:
        >>> preds = Predictions.load("runs/x/predictions.safetensors")
        >>> preds.logits["student"].argmax(1).eq(preds.targets).float().mean()
    """

    targets: Tensor
    logits: dict[str, Tensor]
    train_targets: Tensor | None = None
    train_teacher: Tensor | None = None

    def to_tensors(self) -> dict[str, Tensor]:
        """``test/targets``, ``test/ROLE``, ``train/targets``, ``train/teacher`` (the file's keys)."""
        out = {"test/targets": self.targets, **{f"test/{role}": v for role, v in self.logits.items()}}
        if self.train_targets is not None and self.train_teacher is not None:
            out.update({"train/targets": self.train_targets, "train/teacher": self.train_teacher})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> "Predictions":
        """Inverse of :meth:`to_tensors`."""
        logits = {k[len("test/"):]: v for k, v in tensors.items() if k.startswith("test/") and k != "test/targets"}
        return cls(tensors["test/targets"], logits, tensors.get("train/targets"), tensors.get("train/teacher"))

    def save(self, path: str | Path) -> Path:
        """Write the tensors to ``path`` (safetensors, atomically)."""
        tensors = self.to_tensors()
        return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp))

    @classmethod
    def load(cls, path: str | Path) -> "Predictions":
        """Read what :meth:`save` wrote."""
        return cls.from_tensors(load_file(str(path)))


@dataclass
class Explanations:
    """What the explain stage found: the metrics.json block and the maps the report draws.

    Attributes:
        block: The ``explanations`` block of metrics.json.
        comparisons: Per method, teacher and student maps of the same inputs (images,
            tables), as explanations.safetensors holds them.
        payload: Word-level texts and scores (text), as explanations/text.json holds them.
    """

    block: dict[str, Any]
    comparisons: list[Comparison] = field(default_factory=list)
    payload: dict[str, Any] | None = None

    @property
    def word_level(self) -> bool:
        """Whether words were compared (text): the maps are then in the payload, not in tensors."""
        return self.block.get("level") == "word"

    @classmethod
    def load(cls, block: dict[str, Any], folder: Path, missing: list[str]) -> "Explanations":
        """What :meth:`save` wrote for ``block``; files that should be there and are not go to ``missing``."""
        out = cls(block)
        payload_path, maps_path = folder / TEXT_PAYLOAD, folder / EXPLANATION_MAPS
        if out.word_level:
            if payload_path.is_file():
                out.payload = json.loads(payload_path.read_text(encoding="utf-8"))
            else:
                missing.append(str(TEXT_PAYLOAD))
        elif maps_path.is_file():
            with safe_open(str(maps_path), "pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            methods = [b["method"] for b in block.get("methods", [])]
            out.comparisons = [Comparison.from_tensors(m, tensors) for m in methods if f"{m}/inputs" in tensors]
        elif block.get("methods"):
            missing.append(EXPLANATION_MAPS)
        return out


@dataclass
class ReportInputs:
    """Everything report.html shows, already read.

    Attributes:
        name: The run's name (the page title).
        config: The run's config, or ``None`` when config.yaml is missing.
        config_yaml: The config as run (shown on the page), or ``""``.
        metrics: The content of metrics.json (``{}`` when missing).
        history: history.csv rows (one per epoch and model).
        spec: The models' input spec (teacher.json), or ``None``.
        predictions: The test logits of every model, or ``None``.
        explanations: The explain stage's block, maps and word payload, or ``None``.
        student: The student model (a soft tree is drawn), or ``None``.
        missing: Files the page says are missing.
    """

    name: str
    config: RunConfig | None = None
    config_yaml: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    spec: InputSpec | None = None
    predictions: Predictions | None = None
    explanations: Explanations | None = None
    student: nn.Module | None = None
    missing: list[str] = field(default_factory=list)

    @classmethod
    def from_folder(cls, folder: str | Path, *, explanations: Explanations | None = None) -> "ReportInputs":
        """Read a run folder's files once each; a file that is not there is listed in ``missing``.

        ``explanations`` given (just computed by ``distilens explain RUN``) are used instead
        of reading their files back.
        """
        folder = Path(folder)
        missing: list[str] = []
        config_yaml, config = "", None
        if (folder / "config.yaml").is_file():
            config_yaml = (folder / "config.yaml").read_text(encoding="utf-8")
            config = load_config(folder / "config.yaml")
        else:
            missing.append("config.yaml")
        metrics = _read_json(folder / "metrics.json", missing) or {}
        meta = _read_json(folder / "teacher.json", missing)
        spec = InputSpec.from_dict(meta["input_spec"]) if meta and "input_spec" in meta else None
        history = read_history(folder / HISTORY)
        if not history:
            missing.append(f"{HISTORY} (training curves)")
        predictions = None
        if (folder / PREDICTIONS).is_file():
            predictions = Predictions.load(folder / PREDICTIONS)
        else:
            missing.append(PREDICTIONS)
        block = metrics.get("explanations")
        if explanations is None and block:
            explanations = Explanations.load(block, folder, missing)
        student_meta = _read_json(folder / "student.json", [])
        drawn = student_meta is not None and student_meta.get("arch") in DRAWN_STUDENTS
        student = load_model(folder / "student.safetensors")[0] if drawn else None
        return cls(
            name=config.name if config is not None else folder.name, config=config, config_yaml=config_yaml,
            metrics=metrics, history=history, spec=spec, predictions=predictions, explanations=explanations,
            student=student, missing=missing,
        )


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv rows with numbers parsed back (ints stay ints)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: (v if k == "model" else _number(v)) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """history.csv: one row per epoch and model, one column per key seen (loss terms differ by model)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _read_json(path: Path, missing: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        missing.append(path.name)
        return None
    return json.loads(path.read_text(encoding="utf-8"))
