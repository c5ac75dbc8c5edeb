"""Start a text student from the teacher's knowledge: its word table from the teacher's input embeddings.

A small student trained from random embeddings must learn what every word means from a few
thousand labelled texts; the teacher's input embeddings already place words by meaning.
Two cases (``student.init: teacher_embeddings``):

* **word-level student** (its own vocabulary): each word's vector is the mean of the
  teacher's input-embedding rows of the word's WordPiece pieces (``"unfunny"`` → mean of
  ``un``, ``##fun``, ``##ny``), then all words are projected by a PCA fitted on these
  vectors (the student's vocabulary, [PAD] left out) to the student's width;
* **teacher-tokenised student** (``data.tokenizer: teacher``, the same vocabulary): the
  teacher's own rows, PCA'd (fitted on the teacher's table) when the widths differ.

The [PAD] row stays 0. By default the table is then scaled so the standard deviation of
its entries equals that of the student's own random initialisation, so the learning rate
and weight decay its recipe was tuned for keep their meaning; the geometry (relative
distances and directions) is the teacher's.

Measured lead (BENCHMARKS.md, "Text, round 2"): the fine-tuned MiniLM's table, mean of
pieces, PCA to 32 dimensions, lifted a 32-wide bag of words from 75.1 to 76.3% on Rotten
Tomatoes (3 seeds).

Example:
    >>> info = init_embeddings_from_teacher(student, teacher, bundle.tokenizer, bundle.for_teacher().tokenizer)
    >>> info["source"], round(info["explained_variance"], 2)
    ('piece_means', 0.41)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from ..data.tokenize import TextTokenizer
from ..errors import ConfigError
from .capabilities import TokenModel, unwrap

__all__ = [
    "PCA", "fit_pca", "word_piece_means", "teacher_embedding_table", "check_teacher_init", "init_embeddings_from_teacher",
]


@dataclass(frozen=True)
class PCA:
    """A fitted principal-component projection ``(x - mean) @ components * scale``.

    Attributes:
        mean: (D,) the fitted vectors' mean.
        components: (D, d) orthonormal columns, by decreasing variance; each column's entry
            of largest magnitude is positive (so a fit is the same on every machine).
        explained_variance: (d,) variance of the vectors along each component.
        total_variance: The vectors' total variance (trace of their covariance).
        scale: A scalar applied after the projection.
    """

    mean: Tensor
    components: Tensor
    explained_variance: Tensor
    total_variance: float
    scale: float = 1.0

    @property
    def explained_ratio(self) -> float:
        """The share of the fitted vectors' variance the kept components hold."""
        return min(1.0, float(self.explained_variance.sum()) / max(self.total_variance, 1e-300))  # 1 up to rounding

    def __call__(self, x: Tensor) -> Tensor:
        """(N, D) → (N, d)."""
        return (x.to(self.mean.dtype) - self.mean) @ self.components * self.scale


def fit_pca(vectors: Tensor, dim: int) -> PCA:
    """The top-``dim`` principal components of ``vectors`` (N, D), computed in float64.

    With ``dim`` > D (a student wider than its teacher) the projection keeps all D
    components and adds ``dim`` − D zero columns: no information is invented.

    Args:
        vectors: (N, D) rows to fit on (N >= 2).
        dim: Output width d (>= 1).

    Example:
        >>> pca = fit_pca(torch.randn(100, 8), 3)
        >>> pca(torch.randn(5, 8)).shape
        torch.Size([5, 3])
    """
    if vectors.dim() != 2 or vectors.shape[0] < 2 or dim < 1:
        raise ValueError(f"fit_pca needs (N >= 2, D) vectors and dim >= 1, got {tuple(vectors.shape)} and {dim}")
    x = vectors.detach().to(torch.float64)
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh: (min(N, D), D)
    k = min(dim, vh.shape[0])
    comps = vh[:k].T  # (D, k)
    sign = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))  # (1, k)
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    variance = s[:k] ** 2 / (x.shape[0] - 1)
    if dim > k:
        comps = torch.cat([comps, comps.new_zeros(comps.shape[0], dim - k)], dim=1)
        variance = torch.cat([variance, variance.new_zeros(dim - k)])
    return PCA(mean, comps, variance, float((s**2).sum()) / (x.shape[0] - 1))


def word_piece_means(words: Sequence[str], teacher_tokenizer: TextTokenizer, teacher_table: Tensor) -> Tensor:
    """(V, D) each word's mean of the teacher's embedding rows of its pieces (special tokens left out).

    Args:
        words: V words (a word-level student's vocabulary, in id order).
        teacher_tokenizer: The teacher's tokenizer (e.g. WordPiece).
        teacher_table: (V_t, D) the teacher's input-embedding weights.

    A word the teacher's tokenizer turns into nothing but special tokens (an empty string)
    gets the teacher's [UNK] row, or zeros when it has none.
    """
    table = teacher_table.detach()
    out = table.new_zeros(len(words), table.shape[1])
    if not words:
        return out
    enc = teacher_tokenizer.encode(list(words), max_length=64)
    for i, offsets in enumerate(enc.offsets):
        pieces = [int(enc.ids[i, j]) for j, (a, b) in enumerate(offsets) if b > a]  # specials have (0, 0)
        if pieces:
            out[i] = table[pieces].mean(0)
        elif teacher_tokenizer.unk_id is not None:
            out[i] = table[teacher_tokenizer.unk_id]
    return out


def teacher_embedding_table(
    student_tokenizer: TextTokenizer, teacher_tokenizer: TextTokenizer, teacher_table: Tensor, dim: int,
    *, std: float | None = None,
) -> tuple[Tensor, PCA | None, Literal["teacher_rows", "piece_means"]]:
    """A (V_s, ``dim``) word table for a student, from the teacher's input embeddings.

    Args:
        student_tokenizer: The student's tokenizer (its vocabulary gives the rows).
        teacher_tokenizer: The teacher's tokenizer.
        teacher_table: (V_t, D) the teacher's input-embedding weights.
        dim: The student's embedding width.
        std: Scale the non-pad rows so their entries' standard deviation is ``std``
            (``None``: the projection's own scale).

    Returns:
        ``(table, pca, source)``: the table ([PAD] row 0), the PCA used (``None`` when the
        teacher's rows were copied as they are: same vocabulary, same width, no ``std``),
        and ``"teacher_rows"`` (same vocabulary as the teacher) or ``"piece_means"``.
    """
    v_s, pad = student_tokenizer.vocab_size, student_tokenizer.pad_id
    same_vocab = student_tokenizer.fingerprint() == teacher_tokenizer.fingerprint()
    if same_vocab:
        if teacher_table.shape[0] != v_s:
            raise ConfigError(f"student.init: the teacher's embedding table has {teacher_table.shape[0]} rows but its "
                              f"tokenizer {v_s} tokens")
        vectors, source = teacher_table.detach().to(torch.float64), "teacher_rows"
    else:
        words = [student_tokenizer.id_to_token(i) for i in range(v_s)]
        vectors, source = word_piece_means(words, teacher_tokenizer, teacher_table).to(torch.float64), "piece_means"
        if student_tokenizer.unk_id is not None and teacher_tokenizer.unk_id is not None:
            vectors[student_tokenizer.unk_id] = teacher_table[teacher_tokenizer.unk_id].detach().to(torch.float64)
    keep = torch.arange(v_s) != pad
    pca = None
    if same_vocab and vectors.shape[1] == dim and std is None:
        table = vectors.clone()
    else:
        pca = fit_pca(vectors[keep], dim)
        table = pca(vectors)
    if std is not None:
        scale = std / float(table[keep].std().clamp_min(1e-12))
        table = table * scale
        if pca is not None:
            pca = replace(pca, scale=pca.scale * scale)
    table[pad] = 0.0
    return table.to(torch.float32), pca, source  # type: ignore[return-value]


def check_teacher_init(student: nn.Module, teacher: nn.Module) -> tuple[TokenModel, TokenModel]:
    """Raise the ConfigError :func:`init_embeddings_from_teacher` would, before any training; returns the unwrapped pair."""
    s, t = unwrap(student), unwrap(teacher)
    if not isinstance(s, TokenModel) or not isinstance(t, TokenModel):
        raise ConfigError("student.init: teacher_embeddings needs a text student and a text teacher (token ids); "
                          "use student.init: random for other models")
    return s, t


@torch.no_grad()
def init_embeddings_from_teacher(
    student: nn.Module, teacher: nn.Module, student_tokenizer: TextTokenizer, teacher_tokenizer: TextTokenizer | None,
    *, scale: Literal["student", "pca"] = "student",
) -> dict[str, Any]:
    """Overwrite ``student``'s input embeddings with :func:`teacher_embedding_table` of ``teacher``'s (in place).

    Args:
        student: A :class:`~distilens.models.capabilities.TokenModel` (its freshly built weights).
        teacher: A TokenModel whose ``get_input_embeddings()`` is the table to start from.
        student_tokenizer: The student's tokenizer.
        teacher_tokenizer: The teacher's; ``None`` when it reads the student's ids.
        scale: ``"student"``: the std of the student's own initial (non-pad) rows;
            ``"pca"``: the projection's own scale.

    Returns:
        What was done, for metrics.json: ``source`` (``teacher_rows`` / ``piece_means``),
        ``rows``, ``dim``, ``explained_variance`` (the share of the vectors' variance the
        kept components hold; 1.0 when copied) and ``std``.
    """
    s, t = check_teacher_init(student, teacher)
    weight = s.get_input_embeddings().weight
    teacher_table = t.get_input_embeddings().weight.detach().float().cpu()
    keep = torch.arange(weight.shape[0]) != s.pad_id
    std = float(weight.detach()[keep].float().std()) if scale == "student" else None
    table, pca, source = teacher_embedding_table(student_tokenizer, teacher_tokenizer or student_tokenizer,
                                                 teacher_table, int(weight.shape[1]), std=std)
    if table.shape != weight.shape:
        raise ConfigError(f"student.init: the student's embedding table is {tuple(weight.shape)} but its tokenizer has "
                          f"{table.shape[0]} tokens")
    weight.copy_(table.to(weight.dtype))
    return {"source": source, "rows": int(table.shape[0]), "dim": int(table.shape[1]),
            "explained_variance": 1.0 if pca is None else pca.explained_ratio, "std": float(table[keep].std())}
