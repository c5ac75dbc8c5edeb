"""Token attributions for text models, and the words they are summed into.

A text model (the text contract, issue 8) is called ``model(ids)`` on right-padded token ids
(B, L), keeps ``model.pad_id``, and exposes ``get_input_embeddings()`` (an ``nn.Embedding``);
transformers also give ``attention_maps(ids)``. :func:`attribute_text` scores each token for
a target class with a method from :data:`TEXT_EXPLAINERS`; every method returns (B, L) with
0 on pad positions. :func:`words` and :func:`token_to_word` define the words of a raw text
and which word each token belongs to, so that two models with different tokenizers can be
compared word by word (:mod:`.text_compare`).

Example:
    >>> scores = attribute_text(model, enc.ids, method="integrated_gradients", n_steps=32)
    >>> spans, per_word = word_scores(text, enc.offsets[0], scores[0])
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal, Sequence

import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import Tensor, nn

from ..errors import DistilensError
from ..registry import Registry
from .attribute import eval_mode, no_hook_leak

__all__ = [
    "WORD_RE",
    "words",
    "token_to_word",
    "word_scores",
    "TEXT_EXPLAINERS",
    "attribute_text",
    "text_inapplicable_reason",
]

#: Words (with one inner apostrophe: "don't") and single punctuation marks (contract item 5).
WORD_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")

TextExplainer = Callable[..., Tensor]
#: Token attribution methods for text models: name → ``fn(model, ids, target, keep, **options)``.
TEXT_EXPLAINERS: Registry[TextExplainer] = Registry("text explainer")


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
    return spans, _sum_into_words(spans, offsets, token_scores)[0]


def _sum_into_words(
    spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], token_scores: Tensor
) -> tuple[Tensor, Tensor]:
    """(W,) summed scores and (W,) bool "some token covers this word"."""
    owner = token_to_word(offsets, spans, length=int(token_scores.shape[0]))
    keep = owner >= 0
    scores = torch.zeros(len(spans), dtype=torch.float64)
    scores.index_add_(0, owner[keep], token_scores.detach().cpu().double()[keep])
    covered = torch.zeros(len(spans), dtype=torch.bool)
    covered[owner[keep]] = True
    return scores, covered


def _pad_id(model: nn.Module) -> int:
    pad = getattr(model, "pad_id", None)
    if not isinstance(pad, int):
        raise DistilensError(
            f"{type(model).__name__} is not a text model: it has no integer 'pad_id' attribute (see the text contract)"
        )
    return pad


def _embedding(model: nn.Module) -> nn.Module:
    getter = getattr(model, "get_input_embeddings", None)
    if getter is None:
        raise DistilensError(f"{type(model).__name__} has no get_input_embeddings(); token attributions need one")
    return getter()


def text_inapplicable_reason(method: str, models: Sequence[nn.Module]) -> str | None:
    """Why ``method`` cannot explain (and compare) these text models, or ``None``."""
    if method == "attention_rollout":
        lacking = [type(m).__name__ for m in models if not callable(getattr(m, "attention_maps", None))]
        if lacking:
            return f"needs self-attention maps, which {', '.join(lacking)} does not give (not a transformer)"
    return None


def attribute_text(
    model: nn.Module,
    ids: Tensor,
    target: Tensor | int | None = None,
    method: str = "integrated_gradients",
    *,
    keep: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Score each token of ``ids`` for the ``target`` class of ``model``.

    Args:
        model: A text model (``model(ids)`` → (B, C) logits, ``pad_id``,
            ``get_input_embeddings()``). Explained in eval mode, its mode restored and no hook
            left on it afterwards, also when the call fails.
        ids: (B, L) int64 token ids, right-padded with ``model.pad_id``.
        target: (B,) classes, one int for all, or ``None`` for the model's predicted class.
        method: A name in :data:`TEXT_EXPLAINERS`: ``integrated_gradients``,
            ``gradient_x_input``, ``occlusion``, ``attention_rollout``.
        keep: (B, L) bool, tokens never perturbed (special tokens such as [CLS]/[SEP]): they
            stay in the IG baseline and are not occluded. Pad positions are always kept.
        **options: The method's options (``n_steps`` for IG, ``replace_id``/``score`` for
            occlusion, ``query`` for rollout).

    Returns:
        (B, L) float scores on ``ids``' device; exactly 0 on pad positions. Columns that are
        padding in every row are cut off before the model runs (a text model's output does
        not depend on trailing padding, as its mask is ``ids != pad_id``), which saves time
        when a batch is shorter than ``data.max_length``.

    Example:
        >>> s = attribute_text(student, enc.ids, target=torch.tensor([1, 0]), method="occlusion")
    """
    fn = TEXT_EXPLAINERS.get(method)
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise DistilensError(f"text explainer '{method}': ids must be a (B, L) int64 tensor, got {tuple(ids.shape)} {ids.dtype}")
    pad = _pad_id(model)
    device = next(model.parameters()).device
    x = ids.detach().to(device)
    is_pad = x == pad
    keep = is_pad if keep is None else (keep.to(device).bool() | is_pad)
    if keep.shape != x.shape:
        raise DistilensError(f"keep mask of shape {tuple(keep.shape)} does not match ids of shape {tuple(x.shape)}")
    used = (~is_pad).any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1  # up to the last column holding a real token
    with eval_mode(model), no_hook_leak(model):
        if target is None:
            with torch.no_grad():
                target = model(x[:, :length]).argmax(1)
        target = target.to(device) if isinstance(target, Tensor) else int(target)
        try:
            out = fn(model, x[:, :length], target, keep[:, :length], **options)
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise DistilensError(f"text explainer '{method}': {exc}; see its docstring for its options") from None
            raise
    full = torch.zeros(x.shape, dtype=torch.float32, device=device)
    full[:, :length] = out.detach().float()
    return full.masked_fill(is_pad, 0.0).to(ids.device)


@TEXT_EXPLAINERS.register("integrated_gradients")
def _integrated_gradients(
    model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor, n_steps: int = 32, internal_batch_size: int | None = 256
) -> Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) on the token embeddings.

    Captum's ``LayerIntegratedGradients`` on ``get_input_embeddings()``; the baseline puts the
    pad token's embedding at every position not kept (``keep``: pads, specials), while the
    padding mask stays the input's, so pads and kept tokens score exactly 0. The embedding-dim
    axis is summed, so Σ_tokens = f(x) − f(x′) (completeness, Gauss–Legendre, ``n_steps``).
    """
    baseline = torch.where(keep, ids, torch.full_like(ids, _pad_id(model)))
    lig = LayerIntegratedGradients(model, _embedding(model))
    attr = lig.attribute(ids, baselines=baseline, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size)
    return attr.sum(-1)  # (B, L, D) -> (B, L)


@TEXT_EXPLAINERS.register("gradient_x_input")
def _gradient_x_input(model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor) -> Tensor:
    """Gradient × input on the token embeddings (Shrikumar et al. 2016; Denil et al. 2014): e_i · ∂f/∂e_i."""
    attr = LayerGradientXActivation(model, _embedding(model)).attribute(ids, target=target)
    return attr.sum(-1)  # (B, L, D) -> (B, L)


@TEXT_EXPLAINERS.register("occlusion")
@torch.no_grad()
def _occlusion(
    model: nn.Module,
    ids: Tensor,
    target: Tensor | int,
    keep: Tensor,
    replace_id: int | None = None,
    score: Literal["logit", "probability"] = "logit",
    batch_size: int = 256,
) -> Tensor:
    """Token occlusion (Zeiler & Fergus 2014; Li et al. 2016): s(x) − s(x with token i replaced).

    Each token not kept is replaced, one at a time, by ``replace_id`` (the caller passes the
    tokenizer's mask or unk id; default ``model.pad_id``, i.e. the token is dropped, since the
    padding mask is derived from the ids). ``score`` is the target ``logit`` (default: it
    does not saturate) or its softmax ``probability``. All variants run in batches of
    ``batch_size`` rows.
    """
    if score not in ("logit", "probability"):
        raise DistilensError(f"occlusion: score must be 'logit' or 'probability', got '{score}'")
    rid = _pad_id(model) if replace_id is None else int(replace_id)
    b, _ = ids.shape
    tgt = target if isinstance(target, Tensor) else torch.full((b,), target, dtype=torch.long, device=ids.device)

    def scores(x: Tensor, t: Tensor) -> Tensor:
        out = torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        out = out.softmax(1) if score == "probability" else out
        return out.gather(1, t.view(-1, 1)).squeeze(1).double()

    rows, cols = (~keep).nonzero(as_tuple=True)  # one variant per occluded token
    full = scores(ids, tgt)  # (B,)
    attr = torch.zeros(ids.shape, dtype=torch.float64, device=ids.device)
    if rows.numel():
        variants = ids[rows].clone()  # (V, L)
        variants[torch.arange(rows.numel(), device=ids.device), cols] = rid
        attr[rows, cols] = full[rows] - scores(variants, tgt[rows])
    return attr.float()


@TEXT_EXPLAINERS.register("attention_rollout")
@torch.no_grad()
def _attention_rollout(
    model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor, query: Literal["auto", "first", "mean"] = "auto"
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each token flows into the pooled output.

    Per layer, heads averaged, Â = 0.5·A + 0.5·I with rows renormalised (the residual
    connection); R = Â_L ⋯ Â_1. The score of token j is R[q, j] for the pooled query: the
    first token (``query="first"``, [CLS]-pooled models) or the mean over non-pad query rows
    (``"mean"``, mean-pooled models); ``"auto"`` reads ``model.pooling`` ("first" or "cls"
    → first; "mean" or no such attribute → mean). Independent of the target class.
    """
    if query == "auto":
        query = "first" if getattr(model, "pooling", "mean") in ("first", "cls") else "mean"
    if query not in ("first", "mean"):
        raise DistilensError(f"attention_rollout: query must be 'auto', 'first' or 'mean', got '{query}'")
    maps = model.attention_maps(ids)
    if not maps:
        raise DistilensError(f"{type(model).__name__}.attention_maps returned no layers")
    eye = torch.eye(ids.shape[1], dtype=torch.float64, device=ids.device)
    rollout = eye.expand(ids.shape[0], -1, -1)
    for a in maps:
        step = 0.5 * a.double().mean(1) + 0.5 * eye  # (B, H, L, L) -> (B, L, L)
        step = step / step.sum(-1, keepdim=True)
        rollout = step @ rollout
    real = (ids != _pad_id(model)).double()  # (B, L)
    if query == "first":
        out = rollout[:, 0, :]
    else:
        out = (rollout * real[:, :, None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
    return (out * real).float()
