"""Modalities: one plug-in per kind of input (``InputSpec.kind``), looked up in :data:`MODALITIES`.

The built-in image, table and text modalities are imported on first lookup (``modality_of``),
so that models and evaluation can ask for example inputs without importing the explainers.

Example:
    >>> from distilens.modalities import modality_of
    >>> modality_of(bundle.spec).align
    'pixels'
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    BUILTIN_KINDS,
    MODALITIES,
    Modality,
    all_modalities,
    example_inputs,
    modality_for,
    modality_of,
    read_data,
)

#: The built-in modality classes, by the module that defines them (imported on first use).
_CLASSES = {"ImageModality": "image", "TableModality": "table", "TextModality": "text"}

__all__ = [
    "MODALITIES",
    "BUILTIN_KINDS",
    "Modality",
    "modality_of",
    "modality_for",
    "all_modalities",
    "example_inputs",
    "read_data",
    *_CLASSES,
]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(f".{_CLASSES[name]}", __name__), name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
