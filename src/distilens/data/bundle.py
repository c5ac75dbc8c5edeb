"""Containers for data: what one input looks like (:class:`InputSpec`), a split, a bundle."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Literal, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from .split import SplitInfo

__all__ = [
    "InputSpec", "Split", "DataBundle", "TeacherView", "LazyInputs", "iterate_batches", "count_batches", "by_length",
    "map_by_length",
]


@runtime_checkable
class LazyInputs(Protocol):
    """Inputs read when indexed (e.g. :class:`~distilens.data.lazy.LazyImages`), not held in memory.

    ``inputs[index]`` returns the (B, *shape) float32 tensor of those samples.
    """

    @property
    def shape(self) -> torch.Size: ...

    def __getitem__(self, index: Any) -> Tensor: ...

    def subset(self, index: Tensor) -> "LazyInputs": ...

    def fingerprint(self) -> str: ...

    def load_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor]: ...


@dataclass(frozen=True)
class InputSpec:
    """What a model of this data takes and predicts.

    Attributes:
        kind: ``"image"`` (inputs (C, H, W)), ``"table"`` (inputs (F,)) or ``"text"``
            (inputs (L,) int64 token ids, right-padded with ``pad_id``).
        shape: Shape of one input, without the batch dimension.
        class_names: One name per class; ``len(class_names)`` is the number of classes.
        feature_names: Column names for tables, else ``None``.
        mean: Normalisation subtracted from raw inputs (per channel or per feature).
        std: Normalisation divisor (per channel or per feature).
        vocab_size: Text: number of token ids (0 for images and tables).
        pad_id: Text: the padding token id.
    """

    kind: Literal["image", "table", "text"]
    shape: tuple[int, ...]
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    vocab_size: int = 0
    pad_id: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.kind != "text":  # image and table specs stay as they were before text data
            del d["vocab_size"], d["pad_id"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        return cls(
            kind=d["kind"],
            shape=tuple(int(s) for s in d["shape"]),
            class_names=tuple(str(c) for c in d["class_names"]),
            feature_names=tuple(d["feature_names"]) if d.get("feature_names") else None,
            mean=tuple(float(m) for m in d.get("mean", ())),
            std=tuple(float(s) for s in d.get("std", ())),
            vocab_size=int(d.get("vocab_size", 0)),
            pad_id=int(d.get("pad_id", 0)),
        )


@dataclass
class Split:
    """One split: inputs held in memory, or read lazily (image folders over the memory budget).

    Attributes:
        inputs: (N, *spec.shape) float32, already normalised; or :class:`LazyInputs` whose
            indexing returns such tensors (``lazy`` is then true).
        targets: (N,) int64 class indices.
        masks: (N, H, W) bool ground-truth relevance masks, where the data has them.
    """

    inputs: Tensor | LazyInputs
    targets: Tensor
    masks: Tensor | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError("inputs and targets differ in length")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def lazy(self) -> bool:
        return isinstance(self.inputs, LazyInputs)

    def fingerprint(self) -> str:
        """SHA-256 of the inputs and targets (bytes, shapes, dtypes): the data part of cache keys.

        Lazy inputs contribute their own fingerprint (for images: paths, sizes,
        modification times and preprocessing) instead of their bytes.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            if isinstance(self.inputs, LazyInputs):
                h.update(b"lazy:" + self.inputs.fingerprint().encode())
            for t in (self.targets,) if isinstance(self.inputs, LazyInputs) else (self.inputs, self.targets):
                t = t.detach().cpu().contiguous()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def subset(self, index: Tensor) -> "Split":
        masks = self.masks[index] if self.masks is not None else None
        inputs = self.inputs.subset(index) if isinstance(self.inputs, LazyInputs) else self.inputs[index]
        return Split(inputs, self.targets[index], masks)


@dataclass(frozen=True)
class TeacherView:
    """How the teacher reads the data when it tokenises differently from the student.

    Attributes:
        inputs: Per split ("train", "val", "test"), the teacher's (N, L_t) int64 token ids
            of the same rows, in the same order, as the bundle's splits.
        spec: The :class:`InputSpec` of those ids (the teacher's vocabulary and L_t).
        tokenizer: The teacher's :class:`~distilens.data.tokenize.TextTokenizer`.
    """

    inputs: dict[str, Tensor]
    spec: InputSpec
    tokenizer: Any = None


@dataclass
class DataBundle:
    """Train/val/test splits of one data set and its :class:`InputSpec`.

    ``preprocessing`` is the fitted :class:`~distilens.data.preprocessing.Preprocessor` of
    every kind (images: size, channels, mean/std; tables: the CSV columns; text: the column,
    length and tokenizer): ``preprocessing.save(run_dir)`` writes ``preprocessing.json``,
    and its ``read(path)`` turns new files into model inputs exactly as in training.

    Text data (:func:`distilens.data.text.load_text`) also keeps ``texts`` (the raw texts
    per split, in row order) and ``tokenizer`` (a :class:`~distilens.data.tokenize.TextTokenizer`).
    When the teacher tokenises differently from the student, ``teacher_view`` holds the
    teacher's ids per split, its spec and its tokenizer (:class:`TeacherView`); ``None``
    means the teacher reads the student's inputs. :meth:`for_teacher` is the bundle as the
    teacher reads it, either way.
    """

    name: str
    train: Split
    val: Split
    test: Split
    spec: InputSpec
    preprocessing: Any = None
    texts: dict[str, list[str]] | None = None
    tokenizer: Any = None
    teacher_view: TeacherView | None = None
    split_info: SplitInfo | None = None

    def for_teacher(self) -> "DataBundle":
        """This bundle as the teacher reads it: its own token ids, spec and tokenizer, or ``self``.

        Example:
            >>> logits = predict_logits(teacher, bundle.for_teacher().test)
        """
        view = self.teacher_view
        if view is None:
            return self
        splits = [Split(view.inputs[name], s.targets, s.masks) for name, s in (("train", self.train), ("val", self.val), ("test", self.test))]
        return DataBundle(self.name, *splits, spec=view.spec, texts=self.texts, tokenizer=view.tokenizer,
                          split_info=self.split_info)

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}

    def split_record(self) -> dict[str, Any]:
        """``{"split": {...}}`` for metrics.json's ``dataset`` block (empty when unknown)."""
        return {"split": self.split_info.to_dict()} if self.split_info is not None else {}

    def describe_split(self) -> str | None:
        """The console line saying which split was used and how, or ``None`` when unknown."""
        return self.split_info.describe(self.sizes()) if self.split_info is not None else None

    def loading(self) -> dict[str, Any]:
        """``{"loading": "memory"}``, or ``{"loading": "lazy", "num_workers": n}`` for lazy splits."""
        if not self.train.lazy:
            return {"loading": "memory"}
        return {"loading": "lazy", "num_workers": int(getattr(self.train.inputs, "num_workers", 0))}


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Yield ``(inputs, targets, indices)`` batches; ``indices`` address the split (and caches).

    Shuffling draws from ``generator`` only, so one seed fixes the order. Lazy inputs are
    read in that same order, by their worker processes ahead of use. With
    ``world_size`` > 1 every process draws the same order and yields its contiguous share
    (``torch.tensor_split``: sizes differ by at most one) of each global batch of
    ``batch_size``; a last global batch with fewer samples than processes is dropped, so
    every process takes :func:`count_batches` steps.
    """
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    chunks = []
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if world_size > 1:
            if idx.numel() < world_size:
                break
            idx = idx.tensor_split(world_size)[rank]
        chunks.append(idx)
    if isinstance(split.inputs, LazyInputs):
        for x, idx in zip(split.inputs.load_batches(chunks), chunks):
            yield x, split.targets[idx], idx
        return
    for idx in chunks:
        yield split.inputs[idx], split.targets[idx], idx


def count_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    """Steps :func:`iterate_batches` takes over ``n`` samples (the same on every process)."""
    steps = -(-n // batch_size)
    rest = n % batch_size
    return steps - 1 if world_size > 1 and 0 < rest < world_size else steps


def by_length(ids: Tensor, pad_id: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(rows, ids[rows, :cut])``: rows of similar length, each batch cut to its longest row.

    Token ids padded to a common length L are mostly padding when texts are short (a review
    snippet of 20 tokens at L = 64; an n-gram copy of 3 words). A text model's output does not
    depend on trailing pads, so running rows sorted by length, each batch only as wide as its
    longest row (its last non-pad token), gives the same outputs at a fraction of the cost.

    Args:
        ids: (N, L) int64 token ids.
        pad_id: The padding id.
        batch_size: Rows per batch.

    Example:
        >>> for rows, x in by_length(ids, model.pad_id, 256):
        ...     scores[rows, : x.shape[1]] = explain(model, x)
    """
    n, width = ids.shape
    length = ((ids != pad_id) * torch.arange(1, width + 1, device=ids.device)).amax(1) if width else ids.new_zeros(n)
    for rows in length.argsort(stable=True).split(batch_size):
        yield rows, ids[rows, : max(int(length[rows].max()), 1)]


def map_by_length(fn: Callable[[Tensor], Tensor], ids: Tensor, pad_id: int, batch_size: int) -> Tensor:
    """(N, ...) ``fn`` of every row of ``ids``, run on :func:`by_length` batches and put back in row order.

    ``fn`` maps a (B, l) batch to one output row per text of a shape that does not depend on l
    (logits, probabilities, pooled features).

    Example:
        >>> logits = map_by_length(teacher, ids, teacher.pad_id, 512)   # (N, C), the rows' own order
    """
    out: Tensor | None = None
    for rows, x in by_length(ids, pad_id, batch_size):
        y = fn(x)
        if out is None:
            out = y.new_empty(len(ids), *y.shape[1:])
        out[rows] = y
    if out is None:
        raise ValueError("map_by_length: no rows to run")
    return out
