"""The data stage: read and split the data (or a finished run's data, with its saved preprocessing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..data import DataBundle, InputSpec
from ..data.text_augment import with_transfer_copies
from ..errors import RunFolderError
from ..modalities import Modality, modality_for, modality_of, read_data

__all__ = ["DataResult", "load_run_data", "data_stage", "saved_data_stage", "saved_spec"]


@dataclass
class DataResult:
    """The data of a run.

    Attributes:
        bundle: The train/val/test splits, their spec and preprocessing.
        transfer: The student's training set: ``bundle``, or on text ``bundle`` with
            ``distill.transfer_copies`` perturbed copies of each training text (the teacher
            labels them; the label-only baseline trains on ``bundle``).
        modality: The plug-in of the data's kind (``bundle.spec.kind``).
    """

    bundle: DataBundle
    transfer: DataBundle
    modality: Modality

    @property
    def copies(self) -> int:
        """Transfer copies added to the student's training set (0 without)."""
        return len(self.transfer.train) - len(self.bundle.train)

    def to_json(self) -> dict[str, Any]:
        """``dataset``: name, classes, split sizes, how the splits were made, how the data is held (and transfer copies)."""
        b = self.bundle
        dataset = {"name": b.name, "num_classes": b.spec.num_classes, **b.sizes(), **b.split_record(), **b.loading()}
        if self.transfer is not b:
            dataset["transfer_copies"] = self.copies
        return {"dataset": dataset}


def load_run_data(cfg: RunConfig) -> DataBundle:
    """The data of ``cfg``, read by the modality that claims it (text: with a teacher's own tokenizer).

    Example:
        >>> bundle = load_run_data(load_config("runs/reviews/config.yaml"))
    """
    modality = modality_for(cfg.data)
    return modality.load(cfg) if modality is not None else read_data(cfg)


def data_stage(cfg: RunConfig) -> DataResult:
    """Read the data of ``cfg``; on text, add the transfer copies the student learns from (``distill.transfer``)."""
    bundle = load_run_data(cfg)
    transfer = with_transfer_copies(bundle, cfg.distill.transfer_copies, seed=cfg.seed, **cfg.distill.transfer.options())
    return DataResult(bundle, transfer, modality_of(bundle.spec))


def saved_spec(folder: Path, role: str = "student") -> InputSpec:
    """The input spec a finished run saved beside a model (``ROLE.json``)."""
    path = folder / f"{role}.json"
    if not path.is_file():
        raise RunFolderError(f"'{folder}' holds no {role}.json; give a run folder that `distilens run` finished")
    return InputSpec.from_dict(json.loads(path.read_text(encoding="utf-8"))["input_spec"])


def saved_data_stage(cfg: RunConfig, folder: Path) -> DataResult:
    """The data of a finished run, made by its saved preprocessing (no transfer copies)."""
    spec = saved_spec(folder)
    bundle = modality_of(spec).reload(cfg, folder, spec)
    return DataResult(bundle, bundle, modality_of(spec))
