"""Text to token ids: :class:`TextTokenizer`, a thin wrapper over a ``tokenizers.Tokenizer``.

Two sources: a word-level vocabulary built on training texts (:meth:`TextTokenizer.word_level`,
for small students) or a transformer's own ``tokenizer.json`` (:meth:`TextTokenizer.from_file`).
Either way :meth:`TextTokenizer.encode` returns right-padded ids (N, L) and, per row, the
character span of every non-pad token in the raw text, so scores on tokens can be mapped back
to words even when teacher and student tokenise differently.

Example:
    >>> tok = TextTokenizer.word_level(["a good film", "a bad film"])
    >>> enc = tok.encode(["a good one"], max_length=8)
    >>> enc.ids.shape, enc.offsets[0]
    (torch.Size([1, 3]), [(0, 1), (2, 6), (7, 10)])
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

from distilens.errors import DataError

__all__ = ["Encoded", "TextTokenizer", "WORD_PATTERN", "PAD", "UNK"]

# Words (with one inner apostrophe: "don't") and single punctuation marks; the same rule as
# distilens.explain.words.words, so a word-level token is exactly one word there.
WORD_PATTERN = r"\w+(?:'\w+)?|[^\w\s]"
PAD = "[PAD]"
UNK = "[UNK]"
_PAD_NAMES = ("[PAD]", "<pad>", "<PAD>")
_MASK_NAMES = ("[MASK]", "<mask>", "<MASK>")


def _tokenizers():  # the module, imported late for a clear error
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - tokenizers is a core dependency
        raise DataError(
            "text data needs the 'tokenizers' package; install it with: pip install tokenizers"
        ) from exc
    return tokenizers


@dataclass(frozen=True)
class Encoded:
    """Token ids of a batch of texts.

    Attributes:
        ids: (N, L) int64 token ids, right-padded with the tokenizer's ``pad_id``.
        offsets: Per text, the ``(start, end)`` character span of each non-pad token in that
            text (``text[start:end]``); ``(0, 0)`` for special tokens such as ``[CLS]``.
    """

    ids: Tensor
    offsets: list[list[tuple[int, int]]]

    @property
    def lengths(self) -> Tensor:
        """(N,) int64 number of non-pad tokens per text."""
        return torch.tensor([len(o) for o in self.offsets], dtype=torch.long)


class TextTokenizer:
    """Token ids and character offsets for texts; wraps a ``tokenizers.Tokenizer``.

    Padding and truncation are applied by :meth:`encode`, never by the wrapped tokenizer, so
    a teacher's ``tokenizer.json`` with its own padding settings behaves the same.

    Args:
        tokenizer: A ``tokenizers.Tokenizer``; it must know a pad token (its padding setting
            or a vocabulary entry ``[PAD]``/``<pad>``).
    """

    def __init__(self, tokenizer: object) -> None:
        tk = _tokenizers()
        if not isinstance(tokenizer, tk.Tokenizer):
            raise TypeError(f"expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        # A private copy: encode() switches truncation on and off, and padding stays off.
        self._tok = tk.Tokenizer.from_str(tokenizer.to_str())
        pad_id = None
        if tokenizer.padding is not None:
            pad_id = int(tokenizer.padding["pad_id"])
        else:
            pad_id = self._first_id(_PAD_NAMES)
        if pad_id is None:
            raise DataError(
                "the tokenizer has no pad token ([PAD] or <pad>) and no padding setting; "
                "add one to its tokenizer.json"
            )
        self.pad_id: int = pad_id
        self._tok.no_padding()
        self._tok.no_truncation()
        unk = getattr(self._tok.model, "unk_token", None)
        self.unk_id: int | None = self._tok.token_to_id(unk) if unk else None
        self.mask_id: int | None = self._first_id(_MASK_NAMES)

    def _first_id(self, names: Iterable[str]) -> int | None:
        for name in names:
            i = self._tok.token_to_id(name)
            if i is not None:
                return int(i)
        return None

    # ------------------------------------------------------------------ construction
    @classmethod
    def word_level(
        cls,
        texts: Sequence[str],
        *,
        max_vocab: int = 20000,
        min_freq: int = 1,
        lowercase: bool = True,
    ) -> "TextTokenizer":
        """A word-level vocabulary built on ``texts`` (the training split).

        Words follow :data:`WORD_PATTERN`. The vocabulary is ``[PAD]`` (id 0), ``[UNK]``
        (id 1), then words by descending count, ties broken by the word itself, so the same
        texts always give the same ids. Words seen fewer than ``min_freq`` times, or beyond
        ``max_vocab`` entries in all, map to ``[UNK]``.

        Args:
            texts: Training texts.
            max_vocab: Largest vocabulary size, the two special tokens included (>= 3).
            min_freq: Smallest count a word needs to get its own id (>= 1).
            lowercase: Lower-case texts before splitting them into words.

        Example:
            >>> TextTokenizer.word_level(["b a a"]).id_to_token(2)
            'a'
        """
        if max_vocab < 3:
            raise DataError(f"data.max_vocab must be at least 3, got {max_vocab}")
        if min_freq < 1:
            raise DataError(f"min_freq must be at least 1, got {min_freq}")
        tk = _tokenizers()
        base = tk.Tokenizer(tk.models.WordLevel({PAD: 0, UNK: 1}, unk_token=UNK))
        if lowercase:
            base.normalizer = tk.normalizers.Lowercase()
        base.pre_tokenizer = tk.pre_tokenizers.Split(
            tk.Regex(WORD_PATTERN), behavior="removed", invert=True
        )
        counts: Counter[str] = Counter()
        for text in texts:
            s = base.normalizer.normalize_str(text) if lowercase else text
            counts.update(w for w, _ in base.pre_tokenizer.pre_tokenize_str(s))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = {PAD: 0, UNK: 1}
        for word, n in ranked:
            if n < min_freq or len(vocab) >= max_vocab:
                break
            if word not in vocab:
                vocab[word] = len(vocab)
        tok = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token=UNK))
        tok.normalizer = base.normalizer
        tok.pre_tokenizer = base.pre_tokenizer
        # No add_special_tokens: a review quoting "[PAD]" must not become padding.
        tok.enable_padding(pad_id=0, pad_token=PAD)  # recorded in the JSON; encode() pads itself
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> "TextTokenizer":
        """Load a ``tokenizer.json`` (the Hugging Face ``tokenizers`` format)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"tokenizer file not found: {path}")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "TextTokenizer":
        """The inverse of :meth:`to_json`."""
        tk = _tokenizers()
        try:
            tok = tk.Tokenizer.from_str(text)
        except Exception as exc:  # the Rust parser raises plain Exception subclasses
            raise DataError(f"not a valid tokenizer.json ({str(exc).splitlines()[0]})") from exc
        return cls(tok)

    def to_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` text, its pad token recorded as padding."""
        tk = _tokenizers()
        tok = tk.Tokenizer.from_str(self._tok.to_str())
        tok.enable_padding(pad_id=self.pad_id, pad_token=self.id_to_token(self.pad_id))
        return tok.to_str()

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        from distilens.io import atomic_write_text

        return atomic_write_text(path, self.to_json())

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        """Number of token ids (special tokens included)."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i``."""
        token = self._tok.id_to_token(int(i))
        if token is None:
            raise IndexError(f"token id {i} is outside the vocabulary of {self.vocab_size}")
        return token

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None`` when it is not in the vocabulary."""
        i = self._tok.token_to_id(token)
        return None if i is None else int(i)

    def encode(self, texts: Sequence[str], max_length: int, *, pad_to_max: bool = False) -> Encoded:
        """Token ids (N, L) right-padded with ``pad_id``, and character offsets.

        Texts longer than ``max_length`` tokens are truncated (special tokens such as
        ``[CLS]``/``[SEP]`` are kept). ``L`` is the longest encoded row, or ``max_length``
        when ``pad_to_max`` is set.

        Args:
            texts: N raw texts.
            max_length: Most tokens per row (>= 1).
            pad_to_max: Pad every row to exactly ``max_length``.
        """
        if max_length < 1:
            raise DataError(f"data.max_length must be at least 1, got {max_length}")
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise TypeError("encode() takes a sequence of str")
        self._tok.enable_truncation(max_length)
        try:
            encs = self._tok.encode_batch(texts, add_special_tokens=True) if texts else []
        finally:
            self._tok.no_truncation()
        width = max(max_length if pad_to_max else max((len(e.ids) for e in encs), default=1), 1)
        rows: list[list[int]] = []
        offsets: list[list[tuple[int, int]]] = []
        for e in encs:
            rows.append(e.ids + [self.pad_id] * (width - len(e.ids)))
            special = e.special_tokens_mask
            offsets.append(
                [(0, 0) if s else (int(a), int(b)) for (a, b), s in zip(e.offsets, special)]
                if any(special) else [(int(a), int(b)) for a, b in e.offsets]
            )
        ids = torch.tensor(rows, dtype=torch.long) if rows else torch.zeros((0, width), dtype=torch.long)
        return Encoded(ids=ids, offsets=offsets)

    def decode_tokens(self, ids: Tensor) -> list[str]:
        """Token strings of one row of ids, pad tokens dropped (for reports and debugging)."""
        return [self.id_to_token(int(i)) for i in ids.tolist() if int(i) != self.pad_id]

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's JSON (part of cache keys and run metadata)."""
        import hashlib

        canonical = json.dumps(json.loads(self._tok.to_str()), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, pad_id={self.pad_id})"
