"""What the explain stage explains: the same samples as each model reads them, and how maps meet.

The caller (the data modality) builds one :class:`ExplainInputs` per run; the stage takes
it as it is, whatever the kind of data:

* images and tables: both models read the same tensor (:meth:`ExplainInputs.from_split`);
* text: each model reads its own token ids of the same texts, special tokens stay in place,
  and the two meet on the words of the raw texts (:meth:`ExplainInputs.from_texts`).

Example:
    >>> inputs = ExplainInputs.from_split(bundle.test, class_names=bundle.spec.class_names)
    >>> inputs = ExplainInputs.from_texts(texts, labels, teacher_enc, student_enc)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
from torch import Tensor

from ..data.bundle import LazyInputs, Split
from .align import Aligner, WordAligner, default_aligner
from .explainers import Kind, get_explainer, input_kind
from .words import EncodedLike, special_token_mask

__all__ = ["ModelInputs", "ExplainInputs"]


@dataclass(frozen=True)
class ModelInputs:
    """One model's view of the explained samples.

    Attributes:
        inputs: (N, *shape) float images or rows (or lazily read images), or (N, L) int64
            token ids of a text model.
        keep: (N, L) bool, tokens never perturbed nor scored (special tokens: [CLS], [SEP]);
            text only. Pads are always kept.
        replace_id: The token that stands for a removed one, in occlusion and in
            deletion/insertion (a tokenizer's [UNK] or [MASK]); ``None``: the model's pad id,
            i.e. the token is dropped. Text only.
    """

    inputs: Tensor | LazyInputs
    keep: Tensor | None = None
    replace_id: int | None = None

    def take(self, rows: Tensor) -> "ModelInputs":
        """These inputs for the samples ``rows`` (read, where lazy)."""
        return ModelInputs(self.inputs[rows], None if self.keep is None else self.keep[rows], self.replace_id)

    @property
    def kind(self) -> Kind:
        """The input kind, read from one sample."""
        return input_kind(self.inputs[:1])

    def options(self, method: str) -> dict[str, Any]:
        """The per-model options of ``method`` for these inputs: ``keep``, and ``replace_id`` where the method takes one."""
        impl = get_explainer(method).implementation(self.kind)
        out: dict[str, Any] = {}
        if self.keep is not None:
            out["keep"] = self.keep
        if self.replace_id is not None and impl.takes("replace_id"):
            out["replace_id"] = self.replace_id
        return out


@dataclass(frozen=True)
class ExplainInputs:
    """The samples to explain, as teacher and student read them, and how their maps meet.

    Attributes:
        teacher, student: Each model's view of the same N samples, in the same order.
        labels: (N,) true classes (the stage samples evenly across them; the report shows them).
        align: How the two models' maps meet (:mod:`.align`).
        masks: (N, H, W) bool object masks for the localisation scores (images), or ``None``.
        targets: (N,) classes to explain for both models; ``None``: the teacher's prediction.
        class_names: Names of the classes, for the report.
    """

    teacher: ModelInputs
    student: ModelInputs
    labels: Tensor
    align: Aligner
    masks: Tensor | None = None
    targets: Tensor | None = None
    class_names: Sequence[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def kind(self) -> Kind:
        """The kind of the teacher's inputs ("image", "table" or "text")."""
        return self.teacher.kind

    def take(self, rows: Tensor) -> "ExplainInputs":
        """The same, for the samples ``rows`` (an index tensor)."""
        return replace(
            self,
            teacher=self.teacher.take(rows),
            student=self.student.take(rows),
            labels=self.labels[rows],
            align=self.align.take(rows),
            masks=None if self.masks is None else self.masks[rows],
            targets=None if self.targets is None else self.targets[rows],
        )

    @classmethod
    def from_split(cls, split: Split, *, class_names: Sequence[str] | None = None, align: Aligner | None = None) -> "ExplainInputs":
        """Images or table rows that teacher and student both read: pixels or features meet as they are.

        Example:
            >>> ExplainInputs.from_split(bundle.test).align.level
            'pixel'
        """
        view = ModelInputs(split.inputs)
        return cls(view, view, split.targets, align or default_aligner(split.inputs[:1]), split.masks, class_names=class_names)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        labels: Tensor,
        teacher: EncodedLike,
        student: EncodedLike,
        *,
        class_names: Sequence[str] | None = None,
        targets: Tensor | None = None,
        teacher_replace_id: int | None = None,
        student_replace_id: int | None = None,
        top_words: int = 10,
    ) -> "ExplainInputs":
        """Texts read by each model through its own tokenizer; special tokens kept; words meet.

        Args:
            texts: N raw texts.
            labels: (N,) true classes.
            teacher, student: ``Encoded`` of ``texts`` by each model's tokenizer (``.ids``
                (N, L), ``.offsets``), the same rows in the same order.
            class_names: Names of the classes.
            targets: (N,) classes to explain; default the teacher's prediction.
            teacher_replace_id, student_replace_id: Each tokenizer's stand-in for a removed
                token ([UNK]/[MASK]); default the pad id (the token is dropped).
            top_words: Words per class and model in the report's "most influential words".
        """
        align = WordAligner(texts, teacher.offsets, student.offsets, top_words=top_words)
        views = [
            ModelInputs(enc.ids, special_token_mask(enc.offsets, enc.ids.shape[1]), rid)
            for enc, rid in ((teacher, teacher_replace_id), (student, student_replace_id))
        ]
        labels = torch.as_tensor(labels).long()
        return cls(views[0], views[1], labels, align, None, None if targets is None else torch.as_tensor(targets).long(),
                   class_names)
