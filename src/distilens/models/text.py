"""Text classifiers over token ids: fastText-style bag of embeddings, Kim's CNN, a BiLSTM, a tiny transformer.

Every model takes ``ids`` (B, L) int64, right-padded with ``self.pad_id``, and derives its
padding mask as ``ids != self.pad_id``; appending pad tokens never changes its output. The
shared interface (the text contract):

* ``get_input_embeddings() -> nn.Embedding``: token attributions hook its output;
* ``forward_features(ids) -> (B, D)``: the pooled representation before the head (``hint``);
* :class:`TinyTransformer` also has ``attention_maps(ids) -> [(B, H, L, L)]``: exact
  post-softmax attention probabilities per layer, pad keys at probability 0.

Example:
    >>> model = EmbeddingBagClassifier(vocab_size=100, num_classes=2, pad_id=0)
    >>> model(torch.tensor([[5, 7, 0]])).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from .zoo import MODELS

__all__ = [
    "EmbeddingBagClassifier", "TextCNN", "BiLSTMClassifier", "TinyTransformer", "masked_mean", "reverse_within_length",
    "REFERENCE_TEXT_SPEC", "TEXT_MODELS",
]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, L, D) over the positions where ``mask`` (B, L) is true; 0 for empty rows."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class _TextModel(nn.Module):
    """The contract's shared parts: a token embedding with ``pad_id`` and a linear head."""

    def __init__(self, vocab_size: int, dim: int, pad_id: int) -> None:
        super().__init__()
        if vocab_size < 2 or not 0 <= pad_id < vocab_size:
            raise ValueError(f"need vocab_size >= 2 and 0 <= pad_id < vocab_size, got {vocab_size}, {pad_id}")
        self.pad_id = int(pad_id)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=self.pad_id)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding lookup (B, L) → (B, L, D)."""
        return self.embedding

    def padding_mask(self, ids: Tensor) -> Tensor:
        """(B, L) bool: true at real tokens."""
        return ids != self.pad_id

    def forward_features(self, ids: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, ids: Tensor) -> Tensor:
        """(B, L) int64 ids → (B, C) logits."""
        return self.head(self.dropout(self.forward_features(ids)))


class EmbeddingBagClassifier(_TextModel):
    """fastText (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification").

    The mean of the token embeddings (pads excluded), an optional hidden ReLU layer, a linear
    head. With ``ngrams=2`` every pair of adjacent real tokens (a, b) also adds an embedding
    row, ``(a · 1000003 + b) mod buckets`` of a second table (fastText's hashed bigrams), to
    the same mean. Token attributions hook :meth:`get_input_embeddings` (the unigram table),
    so they see the bigrams' part as a constant: occlusion, which removes the whole word,
    sees both.

    Args:
        vocab_size: Number of token ids.
        num_classes: Number of classes C.
        pad_id: The padding id (its tokens are left out of the mean).
        dim: Embedding width D.
        hidden: Width of the optional hidden layer (0: none).
        dropout: Dropout before the head.
        ngrams: 1 (tokens only) or 2 (tokens and hashed bigrams).
        buckets: Rows of the bigram table (``ngrams=2``).
    """

    def __init__(
        self, vocab_size: int, num_classes: int, pad_id: int = 0, dim: int = 64, hidden: int = 0, dropout: float = 0.0,
        ngrams: int = 1, buckets: int = 8192,
    ) -> None:
        super().__init__(vocab_size, dim, pad_id)
        if ngrams not in (1, 2) or buckets < 1:
            raise ValueError(f"need ngrams in (1, 2) and buckets >= 1, got {ngrams}, {buckets}")
        self.ngrams, self.buckets = int(ngrams), int(buckets)
        self.bigrams = nn.Embedding(self.buckets, dim) if self.ngrams == 2 else None
        self.hidden = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) if hidden > 0 else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden if hidden > 0 else dim, num_classes)

    def bigram_ids(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L) ids → ((B, L-1) bucket of each adjacent pair, (B, L-1) bool: both tokens real)."""
        mask = self.padding_mask(ids)
        return (ids[:, :-1] * 1000003 + ids[:, 1:]) % self.buckets, mask[:, :-1] & mask[:, 1:]

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, D) mean embedding of tokens (and bigrams), through the hidden layer when there is one."""
        mask = self.padding_mask(ids)
        if self.bigrams is None:
            return self.hidden(masked_mean(self.embedding(ids), mask))
        pairs, pair_mask = self.bigram_ids(ids)
        m, pm = mask.unsqueeze(-1).float(), pair_mask.unsqueeze(-1).float()
        total = (self.embedding(ids) * m).sum(1) + (self.bigrams(pairs) * pm).sum(1)
        return self.hidden(total / (m.sum(1) + pm.sum(1)).clamp_min(1.0))


class TextCNN(_TextModel):
    """Kim 2014 ("Convolutional Neural Networks for Sentence Classification").

    Convolutions of several widths over the token embeddings, ReLU, max over time, dropout,
    a linear head. Pad embeddings are zeroed and windows holding only pads are left out of
    the max, so trailing pads change nothing; a text shorter than a filter still gets that
    filter's windows (the text is zero-padded on both sides).

    Args:
        vocab_size: Number of token ids.
        num_classes: Number of classes C.
        pad_id: The padding id.
        dim: Embedding width.
        widths: Filter widths (tokens per window).
        maps: Feature maps per width.
        dropout: Dropout on the pooled features (0.5 in the paper).
    """

    def __init__(
        self, vocab_size: int, num_classes: int, pad_id: int = 0, dim: int = 64,
        widths: Sequence[int] = (3, 4, 5), maps: int = 100, dropout: float = 0.5,
    ) -> None:
        super().__init__(vocab_size, dim, pad_id)
        self.widths = tuple(int(w) for w in widths)
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive integers, got {widths}")
        self.convs = nn.ModuleList(nn.Conv1d(dim, maps, w, padding=w - 1) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(maps * len(self.widths), num_classes)

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, maps·len(widths)) max-over-time features."""
        mask = self.padding_mask(ids)
        x = (self.embedding(ids) * mask.unsqueeze(-1)).transpose(1, 2)  # (B, L, D) -> (B, D, L)
        m = mask.to(x.dtype).unsqueeze(1)  # (B, 1, L)
        pooled = []
        for w, conv in zip(self.widths, self.convs):
            h = F.relu(conv(x))  # (B, maps, L + w - 1): window j covers tokens j-w+1 .. j
            # A window is real when it holds at least one real token (same full padding).
            real = F.max_pool1d(F.pad(m, (w - 1, w - 1)), w, stride=1) > 0  # (B, 1, L + w - 1)
            h = h.masked_fill(~real, float("-inf")).amax(dim=2)
            pooled.append(torch.where(torch.isinf(h), torch.zeros_like(h), h))  # texts without tokens
        return torch.cat(pooled, dim=1)


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first ``lengths[b]`` positions of ``x`` (B, L, ...), leaving the rest in place.

    Its own inverse. ``[a b c PAD PAD]`` with length 3 becomes ``[c b a PAD PAD]``: a
    left-to-right recurrence over the result reads the text backwards and meets its pads
    only after the text, which is what makes :class:`BiLSTMClassifier` padding-invariant.
    """
    pos = torch.arange(x.shape[1], device=x.device)  # (L,)
    index = torch.where(pos < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - pos, pos)  # (B, L)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class BiLSTMClassifier(_TextModel):
    """A one-layer bidirectional LSTM (the student of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT
    into Simple Neural Networks").

    Token embeddings, an LSTM over the text left to right and one right to left, the states
    pooled over the text, a ReLU layer of width ``mlp`` and a linear head. ``pooling="last"``
    is Tang et al.'s: the final state of each direction, concatenated (B, 2·hidden);
    ``"max"`` (default) is the element-wise max over the text's positions of the concatenated
    states (BiLSTM-max; Conneau et al. 2017 found it the best of their pooled BiLSTM sentence
    encoders): every position can carry the decision, not only what survives to the end of
    each direction. Measured on Rotten Tomatoes (d 32, hidden 64, labels, teacher-initialised
    table, one seed): max 77.8%, last 76.1% (benchmarks/results/text_rotten_tomatoes_round3.log).

    Padding is masked without packed sequences: the forward LSTM is causal, so trailing pads
    come after every real position; the backward LSTM runs left to right over each text
    reversed within its length (:func:`reverse_within_length`), so its pads also come last.
    States at pad positions are never read. Appending pads therefore changes nothing, a text
    gives the same output alone or in a batch (up to float rounding), and the model traces
    and exports as plain tensor operations. A text without tokens reads one pad embedding
    (zeroed) and gets the states of that zero input.

    Args:
        vocab_size: Number of token ids.
        num_classes: Number of classes C.
        pad_id: The padding id.
        dim: Embedding width.
        hidden: LSTM state width per direction.
        mlp: Width of the ReLU layer before the head (0: none, the head reads the pooled states).
        dropout: Dropout on the pooled states and before the head.
        pooling: ``"max"`` over positions or ``"last"`` (final states).

    Example:
        >>> model = BiLSTMClassifier(vocab_size=100, num_classes=2, pad_id=0, dim=16, hidden=8)
        >>> model(torch.tensor([[5, 7, 0]])).shape
        torch.Size([1, 2])
    """

    def __init__(
        self, vocab_size: int, num_classes: int, pad_id: int = 0, dim: int = 64, hidden: int = 64, mlp: int = 64,
        dropout: float = 0.1, pooling: Literal["max", "last"] = "max",
    ) -> None:
        super().__init__(vocab_size, dim, pad_id)
        if pooling not in ("max", "last"):
            raise ValueError(f"pooling must be 'max' or 'last', got {pooling!r}")
        if hidden < 1 or mlp < 0:
            raise ValueError(f"need hidden >= 1 and mlp >= 0, got {hidden}, {mlp}")
        self.pooling = pooling
        self.forward_lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, mlp), nn.ReLU()) if mlp else nn.Identity()
        self.head = nn.Linear(mlp or 2 * hidden, num_classes)

    def states(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L) ids → ((B, L, 2·hidden) states, forward ‖ backward, at each position; (B, L) bool real-token mask)."""
        mask = self.padding_mask(ids)
        lengths = mask.sum(1)
        x = self.embedding(ids) * mask.unsqueeze(-1)  # (B, L, D), pads exactly 0
        forward, _ = self.forward_lstm(x)
        backward, _ = self.backward_lstm(reverse_within_length(x, lengths))
        return torch.cat([forward, reverse_within_length(backward, lengths)], dim=-1), mask

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, mlp) features (the pooled states through the ReLU layer; (B, 2·hidden) with ``mlp=0``)."""
        h, mask = self.states(ids)
        half = h.shape[-1] // 2
        if self.pooling == "max":
            # A text without tokens pools its first position (the zero input's state).
            mask = mask | (torch.arange(mask.shape[1], device=ids.device) == 0) & ~mask.any(1, keepdim=True)
            pooled = h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(dim=1)
        else:  # the forward state at the last real token, the backward state at the first
            last = (mask.sum(1) - 1).clamp_min(0)  # (B,)
            forward = h[torch.arange(h.shape[0], device=ids.device), last, :half]
            pooled = torch.cat([forward, h[:, 0, half:]], dim=-1)
        return self.mlp(pooled)


class _SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention that returns its probabilities (Vaswani et al. 2017)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, D), keys (B, L) bool → output (B, L, D), probabilities (B, H, L, L)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, Dh)
        scores = q @ k.transpose(-2, -1) * self.scale  # (B, H, L, L)
        allowed = keys[:, None, None, :]  # (B, 1, 1, L)
        # The most negative finite value, not -inf: exp underflows to exactly 0 and a text
        # without tokens gets a uniform row (zeroed next) instead of NaN gradients.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1) * allowed
        y = (self.dropout(probs) @ v).transpose(1, 2).reshape(b, n, d)  # (B, H, L, Dh) -> (B, L, D)
        return self.out(y), probs


class _Block(nn.Module):
    """Pre-LN transformer layer: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        a, probs = self.attn(self.norm1(x), keys)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x))), probs


class TinyTransformer(_TextModel):
    """A small pre-LN transformer encoder (Vaswani et al. 2017; pre-LN as in Xiong et al. 2020).

    Token plus learned position embeddings, ``layers`` blocks with self-attention over real
    tokens only, a final LayerNorm, masked-mean (or first-token) pooling, a linear head.

    Args:
        vocab_size: Number of token ids.
        num_classes: Number of classes C.
        pad_id: The padding id.
        max_len: Most positions (the data's L).
        dim: Model width d.
        layers: Number of blocks.
        heads: Attention heads per block.
        mlp_ratio: MLP width as a multiple of d.
        dropout: Dropout on attention probabilities and residual branches.
        pooling: ``"mean"`` over real tokens or ``"first"`` (a [CLS] token).
    """

    def __init__(
        self, vocab_size: int, num_classes: int, pad_id: int = 0, max_len: int = 128, dim: int = 128,
        layers: int = 2, heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.1,
        pooling: Literal["mean", "first"] = "mean",
    ) -> None:
        super().__init__(vocab_size, dim, pad_id)
        if pooling not in ("mean", "first"):
            raise ValueError(f"pooling must be 'mean' or 'first', got {pooling!r}")
        self.max_len, self.pooling = int(max_len), pooling
        self.positions = nn.Embedding(self.max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[self.pad_id].zero_()

    def _encode(self, ids: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"texts of {ids.shape[1]} tokens are longer than the model's {self.max_len} positions")
        keys = self.padding_mask(ids)
        x = self.embedding(ids) + self.positions.weight[: ids.shape[1]]  # (B, L, D)
        maps = []
        for block in self.blocks:
            x, probs = block(x, keys)
            maps.append(probs)
        return self.norm(x), keys, maps

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, D) pooled final hidden states."""
        h, keys, _ = self._encode(ids)
        return h[:, 0] if self.pooling == "first" else masked_mean(h, keys)

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        """Post-softmax attention probabilities per layer, each (B, H, L, L); pad keys are 0."""
        return self._encode(ids)[2]

    @property
    def attention_layer(self) -> str:
        """The last block's attention, whose forward returns (output, (B, H, L, L) probabilities): tapped by ``attention_kd``."""
        return f"blocks.{len(self.blocks) - 1}.attn"


# --------------------------------------------------------------------------- the zoo

#: The input spec ``distilens list models`` counts text models' parameters for when the
#: data is not text: a 20,000-token vocabulary, texts of 128 tokens, two classes.
REFERENCE_TEXT_SPEC = InputSpec("text", (128,), ("negative", "positive"), vocab_size=20000, pad_id=0)
TEXT_MODELS = ("embedding_bag", "text_cnn", "bilstm", "tiny_transformer")


def _vocab(name: str, spec: InputSpec, vocab_size: int | None, pad_id: int | None) -> tuple[int, int]:
    if vocab_size is None and spec.kind != "text":
        raise ModelError(f"model '{name}' needs text data (token ids), but the data is a {spec.kind}; use 'mlp' or 'cnn'")
    return int(vocab_size if vocab_size is not None else spec.vocab_size), int(pad_id if pad_id is not None else spec.pad_id)


@MODELS.register("embedding_bag")
def embedding_bag(
    spec: InputSpec, dim: int = 64, hidden: int = 0, dropout: float = 0.0, ngrams: int = 1, buckets: int = 8192,
    vocab_size: int | None = None, pad_id: int | None = None,
) -> nn.Module:
    """fastText-style mean of token (and hashed bigram) embeddings and a linear head (Joulin et al. 2017)."""
    v, p = _vocab("embedding_bag", spec, vocab_size, pad_id)
    return EmbeddingBagClassifier(v, spec.num_classes, p, int(dim), int(hidden), float(dropout), int(ngrams), int(buckets))


@MODELS.register("text_cnn")
def text_cnn(
    spec: InputSpec, dim: int = 64, widths: Sequence[int] = (3, 4, 5), maps: int = 100, dropout: float = 0.5,
    vocab_size: int | None = None, pad_id: int | None = None,
) -> nn.Module:
    """Kim 2014 CNN for text: filter widths 3/4/5, max over time, dropout 0.5."""
    v, p = _vocab("text_cnn", spec, vocab_size, pad_id)
    return TextCNN(v, spec.num_classes, p, int(dim), tuple(int(w) for w in widths), int(maps), float(dropout))


@MODELS.register("bilstm")
def bilstm(
    spec: InputSpec, dim: int = 64, hidden: int = 64, mlp: int = 64, dropout: float = 0.1, pooling: str = "max",
    vocab_size: int | None = None, pad_id: int | None = None,
) -> nn.Module:
    """One-layer BiLSTM, max-pooled (or final) states, a ReLU layer and a linear head (Tang et al. 2019's student)."""
    v, p = _vocab("bilstm", spec, vocab_size, pad_id)
    return BiLSTMClassifier(v, spec.num_classes, p, int(dim), int(hidden), int(mlp), float(dropout), pooling)  # type: ignore[arg-type]


@MODELS.register("tiny_transformer")
def tiny_transformer(
    spec: InputSpec, dim: int = 128, layers: int = 2, heads: int = 4, mlp_ratio: int = 4, dropout: float = 0.1,
    pooling: str = "mean", max_len: int | None = None, vocab_size: int | None = None, pad_id: int | None = None,
) -> nn.Module:
    """Small pre-LN transformer encoder for text (d=128, 2 layers, 4 heads by default)."""
    v, p = _vocab("tiny_transformer", spec, vocab_size, pad_id)
    length = int(max_len) if max_len is not None else int(spec.shape[0])
    return TinyTransformer(
        v, spec.num_classes, p, length, int(dim), int(layers), int(heads), int(mlp_ratio), float(dropout), pooling  # type: ignore[arg-type]
    )
