"""distilens: distil a large PyTorch classifier into a small one, and show with explanations
that the small one still looks where the large one looks.

Example:
    >>> import distilens as dl
    >>> bundle = dl.load_dataset("builtin:digits")
    >>> teacher = dl.build_model("cnn", bundle.spec, width=64)
    >>> dl.fit(teacher, bundle)
    >>> cache = dl.SoftLabelCache.build(teacher, bundle.train)
    >>> student = dl.build_model("cnn", bundle.spec, width=8)
    >>> dl.fit(student, bundle, objectives=[dl.losses.KD(temperature=4.0), dl.losses.CE(weight=0.1)],
    ...        teacher_cache=cache)
    >>> cmp = dl.compare(teacher, student, bundle.test.inputs[:64], method="gradcam")
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Public name → module that defines it. Loaded on first use, so that `import distilens` and
# `distilens --help` do not pay for importing torch, Captum and matplotlib up front.
_EXPORTS = {
    "RunConfig": "config",
    "load_config": "config",
    "DataBundle": "data",
    "InputSpec": "data",
    "Split": "data",
    "load_dataset": "data",
    "SoftLabelCache": "distill",
    "fit": "distill",
    "DistilensError": "errors",
    "attribute": "explain",
    "compare": "explain",
    "Comparison": "explain",
    "build_model": "models",
    "load_model": "models",
    "save_model": "models",
    "run": "pipeline",
    "RunResult": "pipeline",
}

__all__ = ["__version__", "losses", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "losses":
        return importlib.import_module(".distill.objectives", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'distilens' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
