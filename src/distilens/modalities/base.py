"""What a run does differently for one kind of input, behind one class per kind.

A :class:`Modality` is registered in :data:`MODALITIES` under the ``InputSpec.kind`` it
handles (``image``, ``table``, ``text``). The pipeline, the commands on a run folder,
evaluation, export and prediction ask ``modality_of(spec)`` (or, before the data is read,
:func:`modality_for`) instead of branching on the kind. A new kind of data is a new
subclass registered here plus its loader in ``data/`` (ARCHITECTURE.md, "A new modality").

This module imports neither ``models`` nor ``explain`` (models ask it for example inputs);
what images and tables share lives in :mod:`.tensor`.

Example:
    >>> m = modality_of(bundle.spec)
    >>> m.kind, m.example_inputs(bundle.spec, 2).shape
    ('image', torch.Size([2, 1, 8, 8]))
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..config import DataConfig, RunConfig
from ..data import DataBundle, InputSpec, Preprocessor, load_data, load_preprocessing
from ..errors import DataError
from ..registry import Registry

if TYPE_CHECKING:  # explain imports models, which ask this module for example inputs
    from ..explain import ExplainInputs

__all__ = [
    "Modality",
    "MODALITIES",
    "modality_of",
    "modality_for",
    "all_modalities",
    "example_inputs",
    "BUILTIN_KINDS",
    "read_data",
]

Align = Literal["pixels", "features", "words"]


def read_data(cfg: RunConfig, teacher_tokenizer: Any = None) -> DataBundle:
    """The data of ``cfg``, read and split with ``cfg.seed`` (:func:`distilens.data.load_data`)."""
    return load_data(cfg.data, seed=cfg.seed, teacher_tokenizer=teacher_tokenizer)


class Modality:
    """One kind of input: how it is read, preprocessed, fed to models, explained and predicted.

    Attributes:
        kind: The ``InputSpec.kind`` this modality handles (its registry name).
        align: What attributions are compared on: ``pixels``, ``features`` or ``words``.
    """

    kind: ClassVar[str] = ""
    align: ClassVar[Align] = "features"

    # -- before the data is read: the config alone -------------------------------------

    def claims(self, data: DataConfig) -> bool:
        """Whether ``data`` is of this kind before it is read (built-in sets are known only after)."""
        return False

    def with_defaults(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with this kind's default architectures where the user set none (default: as is)."""
        return cfg

    def load(self, cfg: RunConfig) -> DataBundle:
        """Read and split the data of ``cfg``."""
        return read_data(cfg)

    # -- preprocessing, saved in the run folder and applied again later ----------------

    def save_preprocessing(self, bundle: DataBundle, folder: Path) -> None:
        """Write what turns new files into model inputs: preprocessing.json (and the files it names)."""
        bundle.preprocessing.save(folder)

    def load_preprocessing(self, folder: Path, cfg: RunConfig, spec: InputSpec) -> Preprocessor:
        """The preprocessing a run folder saved (a run from before preprocessing.json: what its spec,
        tokenizer.json and ``data.text`` describe)."""
        return load_preprocessing(folder, spec, text_column=cfg.data.text)

    def same_preprocessing(self, saved: Preprocessor, fitted: Preprocessor) -> bool:
        """Whether preprocessing fitted again equals the saved one (default: their descriptions)."""
        return saved.to_dict() == fitted.to_dict()

    def reload(self, cfg: RunConfig, folder: Path, spec: InputSpec) -> DataBundle:
        """The data of a finished run, its inputs made by the run's saved preprocessing.

        The rows and the split are those of ``cfg.data`` and ``cfg.seed``; what is fitted on
        the training split must equal what the run saved (:meth:`same_preprocessing`), so
        the inputs are the ones the saved preprocessing makes, and data changed since the
        run is refused.

        Raises:
            DataError: the data is no longer the one the run was trained on.
        """
        bundle = self.load(cfg)
        saved = self.load_preprocessing(folder, cfg, spec)
        if not self.same_preprocessing(saved, bundle.preprocessing):
            raise DataError(
                f"'{cfg.data.source}' is no longer the data run '{folder}' was trained on (its preprocessing fitted "
                "again differs from the one the run saved); restore the data or run again"
            )
        bundle.preprocessing = saved
        return bundle

    # -- evaluation --------------------------------------------------------------------

    def reference(self, bundle: DataBundle, *, seed: int = 0) -> dict[str, Any] | None:
        """A cheap classical model's result on the same split, the floor a distilled student
        should clear (metrics.json ``reference``); ``None`` where this kind has none."""
        return None

    # -- models ------------------------------------------------------------------------

    def example_inputs(
        self, spec: InputSpec, batch: int = 1, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> Tensor:
        """(batch, *spec.shape) inputs for tracing, counting FLOPs, timing and checking a model.

        Without ``generator``, a constant input (zeros of normalised data); with one,
        seeded standard-normal draws.
        """
        if generator is None:
            return torch.zeros((batch, *spec.shape), device=device)
        return torch.randn((batch, *spec.shape), generator=generator).to(device)

    # -- explanations ------------------------------------------------------------------

    def explain_inputs(self, bundle: DataBundle) -> "ExplainInputs":
        """The test split as teacher and student read it, and how their maps meet (pixels,
        features, words): what :func:`distilens.explain.choose_methods` and
        :func:`distilens.explain.explain_stage` take."""
        raise NotImplementedError

    # -- prediction on new files -------------------------------------------------------

    def attribute_rows(
        self, model: nn.Module, x: Tensor, target: Tensor, inputs: Any, start: int, spec: InputSpec, method: str | None
    ) -> list[Any]:
        """Per row of the batch ``x`` (rows ``start``.. of ``inputs``), its attribution for class
        ``target``: what ``predict --explain`` reports."""
        raise NotImplementedError

    def write_attributions(self, rows: list[dict[str, Any]], folder: Path) -> None:
        """Turn the rows' attributions into files where they do not fit a CSV cell (default: none)."""


#: Modalities by ``InputSpec.kind``. The built-in ones register themselves when their module
#: is imported, which :func:`modality_of` does on first use (see :data:`BUILTIN_KINDS`).
MODALITIES: Registry[Modality] = Registry("modality")
#: The built-in kinds, each defined (and registered) in the module of the same name. They are
#: imported on first lookup, not with this module: models and evaluation ask this module for
#: example inputs, and the modalities themselves import models and explainers.
BUILTIN_KINDS = ("image", "table", "text")


def _import_builtins() -> None:
    for kind in BUILTIN_KINDS:
        if kind not in MODALITIES:
            importlib.import_module(f"{__package__}.{kind}")


def modality_of(spec: InputSpec | str) -> Modality:
    """The modality of a spec (or a kind name); an unknown kind fails with the known ones.

    Example:
        >>> modality_of("text").align
        'words'
    """
    _import_builtins()
    return MODALITIES.get(spec if isinstance(spec, str) else spec.kind)


def all_modalities() -> list[Modality]:
    """Every registered modality (the built-in ones included), by kind name."""
    _import_builtins()
    return [MODALITIES.get(k) for k in MODALITIES.names()]


def modality_for(data: DataConfig) -> Modality | None:
    """The modality that claims ``data`` before it is read, or ``None`` (built-in sets: known once read)."""
    return next((m for m in all_modalities() if m.claims(data)), None)


def example_inputs(
    spec: InputSpec, batch: int = 1, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> Tensor:
    """:meth:`Modality.example_inputs` of ``spec``'s modality: the one example-input builder.

    Example:
        >>> example_inputs(bundle.spec, 2).shape
        torch.Size([2, 1, 8, 8])
    """
    return modality_of(spec).example_inputs(spec, batch, device=device, generator=generator)
