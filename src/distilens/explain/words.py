"""The words of a raw text, and token scores summed into them by character offsets.

Two models with different tokenizers are compared on the words of the text they both read:
:func:`words` defines the words, :func:`token_to_word` which word each token belongs to, and
:func:`sum_into_words` adds each side's token scores into those words.

Example:
    >>> spans, per_word = word_scores("Naïve café!", enc.offsets[0], scores[0])
    >>> word_agreement(text, t_enc.offsets[0], t_scores[0], s_enc.offsets[0], s_scores[0])["spearman"]
"""

from __future__ import annotations

import math
import re
from typing import Protocol, Sequence

import torch
from torch import Tensor

from .agreement import agreement_scores

__all__ = [
    "WORD_RE",
    "EncodedLike",
    "words",
    "token_to_word",
    "sum_into_words",
    "word_scores",
    "special_token_mask",
    "masked_agreement",
    "word_agreement",
]

#: Words (with one inner apostrophe: "don't") and single punctuation marks (contract item 5).
WORD_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")

#: Character spans of the tokens of each text: (start, end) per non-pad token; (0, 0) for specials.
Offsets = Sequence[Sequence[tuple[int, int]]]


class EncodedLike(Protocol):
    """What the explainers read of ``distilens.data.tokenize.Encoded``: ids and character offsets."""

    ids: Tensor
    offsets: list[list[tuple[int, int]]]


def words(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words and punctuation marks of ``text``.

    The one definition of a word that teacher and student scores are both mapped to.

    Example:
        >>> words("Don't go!")
        [(0, 5), (6, 8), (8, 9)]
    """
    return [m.span() for m in WORD_RE.finditer(text)]


def token_to_word(
    offsets: Sequence[tuple[int, int]], word_spans: Sequence[tuple[int, int]], length: int | None = None
) -> Tensor:
    """(length,) index of the word each token's character span overlaps most; −1 for none.

    Special tokens (span ``(0, 0)``), tokens over whitespace only, and the pad positions after
    the last offset get −1. A tie (a token across two words) goes to the first word.

    Args:
        offsets: ``(start, end)`` per non-pad token of one text, as ``Encoded.offsets[i]``.
        word_spans: :func:`words` of the same text.
        length: Pad the result with −1 to this length (the ids' L); default ``len(offsets)``.

    Example:
        >>> token_to_word([(0, 0), (0, 2), (2, 5), (6, 10), (0, 0)], words("naïve café"), length=6).tolist()
        [-1, 0, 0, 1, -1, -1]
    """
    n = len(offsets) if length is None else length
    out = torch.full((n,), -1, dtype=torch.long)
    if not offsets or not word_spans:
        return out
    tok = torch.tensor([tuple(o) for o in offsets], dtype=torch.long)[:n]  # (T, 2)
    wrd = torch.tensor(list(word_spans), dtype=torch.long)  # (W, 2)
    # overlap[t, w] = |[s_t, e_t) ∩ [s_w, e_w)|, clamped at 0
    overlap = (torch.minimum(tok[:, None, 1], wrd[None, :, 1]) - torch.maximum(tok[:, None, 0], wrd[None, :, 0])).clamp_min(0)
    best, idx = overlap.max(1)  # max returns the first maximal index: ties go to the first word
    out[: tok.shape[0]] = torch.where(best > 0, idx, torch.full_like(idx, -1))
    return out


def sum_into_words(
    spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], token_scores: Tensor
) -> tuple[Tensor, Tensor]:
    """Token scores of one text summed per word: (W,) float64 scores and (W,) bool "some token covers it".

    Args:
        spans: :func:`words` of the text.
        offsets: Character span of each non-pad token of the text.
        token_scores: (L,) the text's token scores (pad positions ignored).
    """
    owner = token_to_word(offsets, spans, length=int(token_scores.shape[0]))
    keep = owner >= 0
    scores = torch.zeros(len(spans), dtype=torch.float64)
    scores.index_add_(0, owner[keep], token_scores.detach().cpu().double()[keep])
    covered = torch.zeros(len(spans), dtype=torch.bool)
    covered[owner[keep]] = True
    return scores, covered


def word_scores(
    text: str, offsets: Sequence[tuple[int, int]], token_scores: Tensor
) -> tuple[list[tuple[int, int]], Tensor]:
    """Sum token scores into the :func:`words` of ``text`` (sub-words add up to their word).

    Args:
        text: The raw text.
        offsets: Character span of each non-pad token (``Encoded.offsets[i]``).
        token_scores: (L,) scores of the text's tokens (pad positions ignored).

    Returns:
        The word spans and a (W,) float64 tensor of their scores (0 for words no token covers,
        e.g. after truncation).

    Example:
        >>> spans, s = word_scores("naïve café", enc.offsets[0], attributions[0])
    """
    spans = words(text)
    return spans, sum_into_words(spans, offsets, token_scores)[0]


def special_token_mask(offsets: Offsets, length: int) -> Tensor:
    """(N, length) bool: the special tokens ([CLS], [SEP]: offset (0, 0)), which explainers keep in place.

    Example:
        >>> special_token_mask([[(0, 0), (0, 4), (0, 0)]], 4).tolist()
        [[True, False, True, False]]
    """
    keep = torch.zeros(len(offsets), length, dtype=torch.bool)
    for r, row in enumerate(offsets):
        for j, (a, b) in enumerate(row[:length]):
            keep[r, j] = a == b == 0
    return keep


def masked_agreement(a: Tensor, b: Tensor, covered: Tensor, topk: float) -> dict[str, Tensor]:
    """Per-row agreement of (N, U) maps on the units each row covers: name → (N,), NaN where none.

    The scores of :func:`~.agreement.agreement_scores` (``spearman``, ``kendall``,
    ``pearson``, ``topk_iou``, ``cosine``), each row compared on its ``covered`` (N, U) units
    only (a text's words that both tokenizations reach).
    """
    rows: dict[str, list[Tensor]] = {k: [] for k in ("spearman", "kendall", "pearson", "topk_iou", "cosine")}
    for t, s, c in zip(a, b, covered):
        one = agreement_scores(t[c][None], s[c][None], topk) if bool(c.any()) else {}
        for k in rows:
            rows[k].append(one[k].float().cpu() if k in one else torch.tensor([math.nan]))
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in rows.items()}


def word_agreement(
    text: str,
    teacher_offsets: Sequence[tuple[int, int]],
    teacher_scores: Tensor,
    student_offsets: Sequence[tuple[int, int]],
    student_scores: Tensor,
    topk: float = 0.2,
) -> dict[str, float]:
    """Agreement of two models' token scores on one text, compared on its words.

    Each side's tokens are summed into :func:`words` (``text``) by character offsets; the
    words both sides cover (truncation may cut one side shorter) are scored with
    :func:`~.agreement.agreement_scores`: ``spearman``, ``kendall``, ``pearson``,
    ``topk_iou`` (top ``topk`` fraction of the words) and ``cosine``. Undefined scores (a
    constant map, no common word) are NaN.

    Args:
        text: The raw text.
        teacher_offsets, student_offsets: Each tokenizer's character spans of the non-pad tokens.
        teacher_scores, student_scores: (L_t,), (L_s,) token scores.

    Example:
        >>> word_agreement(text, t_enc.offsets[0], t_attr[0], s_enc.offsets[0], s_attr[0])["spearman"]
    """
    spans = words(text)
    t, t_cov = sum_into_words(spans, teacher_offsets, teacher_scores)
    s, s_cov = sum_into_words(spans, student_offsets, student_scores)
    return {k: float(v[0]) for k, v in masked_agreement(t[None], s[None], (t_cov & s_cov)[None], topk).items()}
