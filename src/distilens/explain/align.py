"""How a teacher's and a student's maps of the same samples meet: on pixels, features or words.

An :class:`Aligner` brings the two models' attributions onto common units (:class:`~.comparison.Aligned`),
says which top-k fraction of those units the overlap score uses, and keeps the comparison
in the run folder. Three are defined here; the data modality that knows its inputs builds
the right one:

* :class:`PixelAligner` — image maps on one grid (CAMs already come upsampled to the input;
  a coarser map is upsampled bilinearly to the finer grid). Saved in explanations.safetensors.
* :class:`FeatureAligner` — table rows: one score per column, the same columns for both.
  Saved in explanations.safetensors.
* :class:`WordAligner` — text: each model's token scores summed into the same words of the
  raw text by character offsets, whatever the two tokenizers; compared on the words both
  reach. Saved in explanations/text.json for the report.

Example:
    >>> align = WordAligner(texts, teacher_enc.offsets, student_enc.offsets)
    >>> cmp = compare(teacher, student, teacher_enc.ids, student_inputs=student_enc.ids, align=align)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from ..errors import DistilensError
from ..io import atomic_write
from .comparison import Aligned, Comparison
from .explainers import Kind, input_kind
from .text_payload import save_text_explanations, text_payload
from .words import Offsets, sum_into_words, words

__all__ = ["Aligner", "PixelAligner", "FeatureAligner", "WordAligner", "default_aligner", "save_maps", "MAPS_FILE"]

#: Where image and table comparisons are kept in a run folder.
MAPS_FILE = "explanations.safetensors"


@runtime_checkable
class Aligner(Protocol):
    """How two models' maps of the same N samples meet, and how the comparison is kept."""

    level: str
    """The common units: ``"pixel"``, ``"feature"`` or ``"word"`` (metrics.json's ``explanations.level``)."""

    topk: float
    """Default fraction of the units in the top-k overlap score."""

    def take(self, rows: Tensor) -> "Aligner":
        """The aligner of the samples ``rows`` (an index tensor into the N samples)."""
        ...

    def align(self, teacher_maps: Tensor, student_maps: Tensor) -> Aligned:
        """Both models' maps, as :func:`~.attribute.attribute` returned them, on common units."""
        ...

    def save(
        self, folder: Path, comparisons: Sequence[Comparison], *, rows: Tensor, labels: Tensor | None,
        class_names: Sequence[str] | None, skipped: Mapping[str, str],
    ) -> Path:
        """Write the comparisons into the run folder ``folder``; return the file written.

        ``rows``: the explained samples' indices in the split; ``labels``: their true
        classes; ``skipped``: methods left out, with the reason.
        """
        ...


def save_maps(folder: Path, comparisons: Sequence[Comparison]) -> Path:
    """All comparisons' tensors (:meth:`~.comparison.Comparison.to_tensors`) in ``folder/explanations.safetensors``."""
    tensors: dict[str, Tensor] = {}
    for cmp in comparisons:
        tensors.update(cmp.to_tensors())
    return atomic_write(Path(folder) / MAPS_FILE, lambda tmp: save_file(tensors, tmp))


class _MapsInSafetensors:
    """The saving shared by pixel and feature maps: tensors in explanations.safetensors."""

    def take(self, rows: Tensor) -> "_MapsInSafetensors":
        return self  # nothing per sample

    def save(
        self, folder: Path, comparisons: Sequence[Comparison], *, rows: Tensor, labels: Tensor | None,
        class_names: Sequence[str] | None, skipped: Mapping[str, str],
    ) -> Path:
        return save_maps(folder, comparisons)


@dataclass(frozen=True)
class PixelAligner(_MapsInSafetensors):
    """Image maps, (N, C, H, W) or CAMs (N, 1, h, w), compared on the finer of the two grids.

    Maps on the same grid are compared as they are (channels summed by the scores); a
    coarser map is channel-summed and upsampled bilinearly, and so is the other.
    """

    level: str = "pixel"
    topk: float = 0.1

    def align(self, teacher_maps: Tensor, student_maps: Tensor) -> Aligned:
        a, b = teacher_maps, student_maps
        if a.dim() != 4 or b.dim() != 4:
            raise DistilensError(f"pixel maps must be (N, C, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[-2:] != b.shape[-2:]:
            size = max(a.shape[-2:], b.shape[-2:], key=lambda s: s[0] * s[1])
            a = F.interpolate(a.sum(1, keepdim=True).float(), size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b.sum(1, keepdim=True).float(), size=size, mode="bilinear", align_corners=False)
        return Aligned(a, b)


@dataclass(frozen=True)
class FeatureAligner(_MapsInSafetensors):
    """Table maps (N, F): one score per column, the same columns for teacher and student."""

    level: str = "feature"
    topk: float = 0.1

    def align(self, teacher_maps: Tensor, student_maps: Tensor) -> Aligned:
        if teacher_maps.shape != student_maps.shape:
            raise DistilensError(
                f"feature maps differ in shape: {tuple(teacher_maps.shape)} vs {tuple(student_maps.shape)}; "
                "teacher and student must read the same columns"
            )
        return Aligned(teacher_maps, student_maps)


@dataclass(frozen=True)
class WordAligner:
    """Text: token scores of both models summed into the words of the raw texts (:func:`~.words.words`).

    Args:
        texts: The N raw texts, in the order of the explained rows.
        teacher_offsets, student_offsets: Per text, each tokenizer's character span of every
            non-pad token (``Encoded.offsets``); specials are ``(0, 0)`` and belong to no word.
        top_words: Words per class and model in the report's "most influential words".

    A word no token of one side reaches (truncation) is left out of that text's comparison.
    ``topk`` is 0.2: a fifth of a text's words (texts are short).
    """

    texts: Sequence[str]
    teacher_offsets: Offsets
    student_offsets: Offsets
    top_words: int = 10
    level: str = "word"
    topk: float = 0.2
    spans: list[list[tuple[int, int]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not len(self.texts) == len(self.teacher_offsets) == len(self.student_offsets):
            raise DistilensError(
                f"explain text: {len(self.texts)} texts but {len(self.teacher_offsets)} teacher and "
                f"{len(self.student_offsets)} student rows; encode the same texts for both models"
            )
        object.__setattr__(self, "spans", [words(t) for t in self.texts])

    def take(self, rows: Tensor) -> "WordAligner":
        idx = [int(i) for i in rows]
        return WordAligner(
            [self.texts[i] for i in idx], [self.teacher_offsets[i] for i in idx], [self.student_offsets[i] for i in idx],
            top_words=self.top_words, level=self.level, topk=self.topk,
        )

    def align(self, teacher_maps: Tensor, student_maps: Tensor) -> Aligned:
        n = len(self.texts)
        if teacher_maps.shape[0] != n or student_maps.shape[0] != n:
            raise DistilensError(f"word alignment: {n} texts but maps of {teacher_maps.shape[0]} and {student_maps.shape[0]} rows")
        width = max((len(s) for s in self.spans), default=0)
        t_words = torch.zeros(n, width, dtype=torch.float64)
        s_words = torch.zeros(n, width, dtype=torch.float64)
        covered = torch.zeros(n, width, dtype=torch.bool)
        for i, spans in enumerate(self.spans):
            t, t_cov = sum_into_words(spans, self.teacher_offsets[i], teacher_maps[i])
            s, s_cov = sum_into_words(spans, self.student_offsets[i], student_maps[i])
            t_words[i, : len(spans)], s_words[i, : len(spans)] = t, s
            covered[i, : len(spans)] = t_cov & s_cov
        return Aligned(t_words, s_words, covered)

    def save(
        self, folder: Path, comparisons: Sequence[Comparison], *, rows: Tensor, labels: Tensor | None,
        class_names: Sequence[str] | None, skipped: Mapping[str, str],
    ) -> Path:
        payload = text_payload(
            comparisons, self.texts, self.spans, rows=rows, labels=labels, class_names=class_names,
            skipped=skipped, top_words=self.top_words,
        )
        return save_text_explanations(folder, payload)


_DEFAULT: dict[Kind, type] = {"image": PixelAligner, "table": FeatureAligner}


def default_aligner(inputs: Tensor) -> Aligner:
    """The aligner for inputs that both models read alike: pixels for images, features for tables.

    Text has none: two tokenizations meet only through the raw text (:class:`WordAligner`).
    """
    kind = input_kind(inputs)
    if kind not in _DEFAULT:
        raise DistilensError(
            "comparing text models needs align=WordAligner(texts, teacher_offsets, student_offsets): "
            "their token scores meet on the words of the raw texts"
        )
    return _DEFAULT[kind]()
