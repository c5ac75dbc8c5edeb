"""Images (C, H, W): read with Pillow, normalised per channel, explained on the pixel grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..io import atomic_write_bytes
from ..report.figures import heatmap_png
from .base import MODALITIES
from .tensor import TensorModality

__all__ = ["ImageModality"]


class ImageModality(TensorModality):
    """Image folders and the image built-ins; maps compared pixel by pixel."""

    kind = "image"
    align = "pixels"

    def claims(self, data: DataConfig) -> bool:
        return data.source.startswith("imagefolder:")

    def write_attributions(self, rows: list[dict[str, Any]], folder: Path) -> None:
        """Each row's map as a heatmap PNG in ``folder``; the row names its file (``heatmap``)."""
        for i, row in enumerate(rows):
            attr = row.pop("attribution", None)
            if attr is not None:
                png = heatmap_png(attr, f"{row['source']} → {row['class']}")
                row["heatmap"] = str(atomic_write_bytes(folder / f"{i:05d}.png", png))


MODALITIES.register("image")(ImageModality())
