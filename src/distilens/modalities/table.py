"""Tables (F,): CSV columns imputed, one-hot encoded and standardised; explained per feature."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..config import DataConfig, RunConfig
from ..data import DataBundle, InputSpec
from ..data.table import TablePreprocessor
from ..errors import DataError
from ..io import atomic_write_json
from .base import MODALITIES
from .tensor import TensorModality

__all__ = ["TableModality", "PREPROCESSING"]

#: The fitted preprocessing of a CSV run, applied again to new rows by ``predict``.
PREPROCESSING = "preprocessing.json"


class TableModality(TensorModality):
    """CSV tables and the table built-ins; attributions compared feature by feature."""

    kind = "table"
    align = "features"

    def claims(self, data: DataConfig) -> bool:
        return data.source.startswith("csv:") and data.text is None

    def save_preprocessing(self, bundle: DataBundle, folder: Path) -> None:
        if bundle.preprocessing is not None:  # built-in tables: spec holds the normalisation
            atomic_write_json(folder / PREPROCESSING, bundle.preprocessing.to_dict())

    def load_preprocessing(self, folder: Path, cfg: RunConfig, spec: InputSpec) -> TablePreprocessor | None:
        path = folder / PREPROCESSING
        if not path.is_file():
            return None
        return TablePreprocessor.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def reload(self, cfg: RunConfig, folder: Path, spec: InputSpec) -> DataBundle:
        """The run's rows and split; the fitted columns must equal preprocessing.json (a changed file is refused)."""
        bundle = super().reload(cfg, folder, spec)
        saved = self.load_preprocessing(folder, cfg, spec)
        fitted = bundle.preprocessing.to_dict() if bundle.preprocessing is not None else None
        if saved is not None and saved.to_dict() != fitted:
            raise DataError(
                f"'{cfg.data.source}' is no longer the table run '{folder}' was trained on (its fitted preprocessing "
                f"differs from {PREPROCESSING}); restore the file or run again"
            )
        return bundle

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        """Per row, ``{feature: attribution}`` (the map when the spec names no features)."""
        maps = super().attribute_rows(model, x, target, inputs, start, spec, method)
        if not spec.feature_names:
            return maps
        return [{f: float(v) for f, v in zip(spec.feature_names, m.tolist())} for m in maps]


MODALITIES.register("table")(TableModality())
