"""Data: sources, seeded stratified splits, preprocessing fitted on the training split.

Layout (one concern per module; no module imports one that imports it back):

* :mod:`.load` — :func:`load_data` (a typed ``DataConfig``), :func:`load_dataset` (keywords),
  :func:`load_preprocessing` (a run folder's ``preprocessing.json``).
* Sources: :mod:`.builtin` (registered sets), :mod:`.imagefolder` (+ :mod:`.lazy`),
  :mod:`.table` (CSV tables), :mod:`.text` (text tables, with :mod:`.tokenize`).
* Shared rules: :mod:`.split` (indices), :mod:`.normalise` (the normalisation),
  :mod:`.image_io` (decoding images), :mod:`.rows` (row readers), :mod:`.bundle` (containers),
  :mod:`.preprocessing` (the :class:`Preprocessor` protocol).
"""

from __future__ import annotations

from .builtin import DATASETS, RawData, load_builtin
from .bundle import DataBundle, InputSpec, Split, iterate_batches
from .image_io import IMAGE_ERRORS, ImagePreprocessor
from .load import PREPROCESSORS, SOURCES, load_data, load_dataset, load_preprocessing, preprocessing_for
from .preprocessing import PREPROCESSING_FILE, PredictionInputs, Preprocessor
from .split import SplitIndices, split_indices, split_validation
from .table import TablePreprocessor
from .text import TextPreprocessor

__all__ = [
    "load_data",
    "load_dataset",
    "load_builtin",
    "load_preprocessing",
    "preprocessing_for",
    "DataBundle",
    "InputSpec",
    "Split",
    "RawData",
    "DATASETS",
    "SOURCES",
    "PREPROCESSORS",
    "PREPROCESSING_FILE",
    "IMAGE_ERRORS",
    "Preprocessor",
    "PredictionInputs",
    "ImagePreprocessor",
    "TablePreprocessor",
    "TextPreprocessor",
    "SplitIndices",
    "split_indices",
    "split_validation",
    "iterate_batches",
]
