"""Toy text models with closed-form attributions (the text contract, issue 8), for the tests.

Both take right-padded token ids (B, L), store ``pad_id`` and derive their padding mask as
``ids != pad_id``; both give ``get_input_embeddings()`` and ``forward_features()``;
:class:`TinyAttention` also gives ``attention_maps()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["MeanBag", "TinyAttention", "Enc", "encode", "wordpiece", "wordlevel"]


class MeanBag(nn.Module):
    """logits = W₂·g(mean of the non-pad embeddings) + b₂, g = tanh(W₁· + b₁) or the identity.

    Without ``hidden`` the model is linear in the embeddings, so for class c gradient × input
    is e_i·W_c / n and Integrated Gradients from the pad embedding is (e_i − e_pad)·W_c / n,
    with n the number of non-pad tokens.

    Example:
        >>> MeanBag(vocab=10, dim=4, classes=2)(torch.tensor([[3, 4, 0]])).shape
        torch.Size([1, 2])
    """

    def __init__(self, vocab: int = 12, dim: int = 4, classes: int = 3, hidden: int | None = None, pad_id: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.pad_id = pad_id
        self.emb = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, hidden) if hidden else None
        self.head = nn.Linear(hidden or dim, classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def pool(self, e: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D) embeddings, (B, L) 0/1 mask → (B, H) pooled features."""
        h = (e * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)  # an all-pad row pools to 0
        return torch.tanh(self.hidden(h)) if self.hidden is not None else h

    def forward_features(self, ids: Tensor) -> Tensor:
        return self.pool(self.emb(ids), (ids != self.pad_id).float())

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.forward_features(ids))


class TinyAttention(nn.Module):
    """One self-attention layer (2 heads, padded keys masked) with a residual, mean pool, linear head."""

    def __init__(self, vocab: int = 12, dim: int = 8, classes: int = 2, pad_id: int = 0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.pad_id = pad_id
        self.emb = nn.Embedding(vocab, dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def _layer(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        e = self.emb(ids)
        out, probs = self.attn(e, e, e, key_padding_mask=ids == self.pad_id, need_weights=True, average_attn_weights=False)
        return e + out, probs

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        """One (B, 2, L, L) map: post-softmax probabilities, padded keys 0."""
        return [self._layer(ids)[1]]

    def forward_features(self, ids: Tensor) -> Tensor:
        mask = (ids != self.pad_id).float()[..., None]
        return (self._layer(ids)[0] * mask).sum(1) / mask.sum(1).clamp_min(1)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.forward_features(ids))


@dataclass
class Enc:
    """The two fields of ``distilens.data.tokenize.Encoded`` that the explainers read."""

    ids: Tensor
    offsets: list[list[tuple[int, int]]]


def encode(tok: Any, texts: Sequence[str], pad_id: int = 0) -> Enc:
    """Encode with a ``tokenizers.Tokenizer``, right-pad with ``pad_id`` to the longest text."""
    out = tok.encode_batch(list(texts))
    length = max(len(e.ids) for e in out)
    ids = torch.full((len(texts), length), pad_id, dtype=torch.long)
    for i, e in enumerate(out):
        ids[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
    return Enc(ids, [[(int(a), int(b)) for a, b in e.offsets] for e in out])


def wordpiece(vocab: Sequence[str]) -> Any:
    """A BERT-style WordPiece tokenizer ("##" sub-words, lower-cased, accents stripped, [CLS] … [SEP]).

    ``vocab`` must hold [PAD] (id 0), [UNK], [CLS] and [SEP].
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])]
    )
    return tok


def wordlevel(vocab: Sequence[str]) -> Any:
    """A lower-cased word-level tokenizer splitting as :func:`distilens.explain.words.words` does."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    from ..explain.words import WORD_RE

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    split = pre_tokenizers.Split(Regex(WORD_RE.pattern), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), split])
    return tok
