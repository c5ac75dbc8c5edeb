"""Images (C, H, W): read with Pillow, normalised per channel, explained on the pixel grid."""

from __future__ import annotations

import re
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
        """Each row's map as a PNG in ``folder``: the input beside the map drawn over it, named after the input
        (``cats/1.png`` → ``cats-1.heatmap.png``, numbered where two inputs share a name); the row names its file
        (``heatmap``)."""
        used: set[str] = set()
        for row in rows:
            attr, image = row.pop("attribution", None), row.pop("input", None)
            if attr is not None:
                png = heatmap_png(attr, f"{row['source']} → {row['class']}", image=image)
                row["heatmap"] = str(atomic_write_bytes(folder / _heatmap_name(str(row["source"]), used), png))


def _heatmap_name(source: str, used: set[str]) -> str:
    """``STEM.heatmap.png`` for the input ``source`` (a path), unique among ``used`` (which it joins)."""
    stem = re.sub(r"[^\w.\- ]+", "_", str(Path(source).with_suffix("")).replace("\\", "-").replace("/", "-"))
    stem = stem.strip(" .") or "input"  # dark/0.png -> dark-0
    name, k = f"{stem}.heatmap.png", 2
    while name in used:
        name, k = f"{stem}-{k}.heatmap.png", k + 1
    used.add(name)
    return name


MODALITIES.register("image")(ImageModality())
