"""A larger transfer set for text distillation: perturbed copies of the training texts.

Distillation only needs the teacher's outputs, not labels, so the student can learn from
texts nobody labelled: Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks", §3.2) perturb each training sentence and let the teacher label the
copies. Two recipes (``distill.transfer.method``):

* ``drop`` (the default, as before): each whitespace-separated word is left out with
  probability ``drop_prob``, then, with probability ``ngram_prob``, only a window of
  1 … ``max_ngram`` of the remaining words is kept.
* ``tang``: Tang et al.'s three operations. For each word, one draw u ~ U[0, 1]: u <
  ``p_mask`` masks it; ``p_mask`` ≤ u < ``p_mask + p_pos`` replaces it by a word of the
  same class drawn from the training texts' unigram counts of that class; then, with
  probability ``p_ng``, only an n-gram window is kept (n uniform in 1 … ``max_ngram``).
  Their values: p_mask = p_pos = 0.1, p_ng = 0.25, n ≤ 5, 20 copies per text (SST-2).

A masked word becomes [MASK] for a teacher with a mask token (what BERT-style encoders
were pre-trained on) and [UNK] for the student (what a word vocabulary has): a copy is a
:class:`TextCopy` whose :meth:`TextCopy.render` writes each side's text with its own
placeholder, a string checked to tokenise to exactly that token (:func:`mask_placeholder`).

**Word classes, not a tagger.** Tang et al. used a part-of-speech tagger; none may be
downloaded at run time here, so :func:`word_class` is a coarse stand-in: a closed-class
lexicon (determiners, pronouns, prepositions, conjunctions, auxiliaries and modals,
negations, wh-words, common adverbs, number words; ~250 words), numbers and punctuation
by shape, then suffix rules for open-class words (-ly adverbs, -ing and -ed forms,
noun-forming -tion/-ness/-ment/…, adjective-forming -ous/-ful/-ive/-able/…, plural-or-3rd-
person -s). Every other word ("film", "good", "make") falls in one ``OPEN`` class, so a
replacement there may swap a noun for an adjective: the copies are less grammatical than a
tagger's, and the teacher labels them as they are.

Copies equal to their text or to each other are dropped. Everything is seeded.

Example:
    >>> augment_texts(["a fine , funny film that moves fast and ends well"], copies=5, seed=0)
    (['a fine , funny', 'and ends well'], tensor([0, 0]))
"""

from __future__ import annotations

import bisect
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .bundle import DataBundle, Split
from .tokenize import WORD_PATTERN, TextTokenizer

__all__ = [
    "augment_texts", "tang_copies", "TextCopy", "word_class", "mask_placeholder", "with_transfer_copies",
    "TANG_DEFAULTS",
]

#: Tang et al. 2019's settings (§3.2 and §4).
TANG_DEFAULTS: dict[str, float] = {"p_mask": 0.1, "p_pos": 0.1, "p_ng": 0.25, "max_ngram": 5}

_CLOSED = {
    "DET": "a an the this that these those some any no every each either neither another such what which whose all "
           "both half",
    "PRON": "i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its "
            "itself we us our ours ourselves they them their theirs themselves someone somebody something anyone "
            "anybody anything everyone everybody everything nobody nothing none who whom one ones",
    "ADP": "of in on at by for with about against between into through during before after above below to from up "
           "down over under further than among within without across along around behind beyond near off onto out "
           "per since toward towards upon via despite like unlike throughout",
    "CONJ": "and or but nor so yet because although though while whereas if unless until whether as",
    "AUX": "is are was were be been being am have has had having do does did doing can could will would shall should "
           "may might must 's 're 'm 'll 'd 've isn't aren't wasn't weren't don't doesn't didn't can't couldn't "
           "won't wouldn't shouldn't hasn't haven't hadn't",
    "NEG": "not never n't",
    "WH": "how why when where",
    "ADV": "very too quite rather just only also even still already almost enough here there now then always often "
           "sometimes seldom rarely soon once ever well much more most less least again instead perhaps maybe",
    "NUM": "two three four five six seven eight nine ten eleven twelve twenty thirty hundred thousand million "
           "first second third",
}
_LEXICON = {word: tag for tag, words in _CLOSED.items() for word in words.split()}
_SUFFIXES = (  # open-class words by ending, first match wins (the stem must keep 3 letters)
    ("ADV", ("ly",)),
    ("ING", ("ing",)),
    ("ED", ("ed",)),
    ("NOUN", ("tion", "sion", "ness", "ment", "ity", "ism", "ist", "ship", "ance", "ence", "hood")),
    ("ADJ", ("ous", "ful", "ive", "able", "ible", "less", "ical", "ic", "al", "ish")),
    ("S", ("s",)),
)
_NUMBER = re.compile(r"\d[\d.,:/]*(?:st|nd|rd|th|s)?")
_WORD_RE = re.compile(WORD_PATTERN)


def word_class(word: str) -> str:
    """A coarse part-of-speech class of a lower-cased word: a lexicon, number and punctuation shapes, suffixes, else ``OPEN``.

    Example:
        >>> [word_class(w) for w in ["the", "quickly", "film", ",", "1990s", "boring"]]
        ['DET', 'ADV', 'OPEN', 'PUNCT', 'NUM', 'ING']
    """
    w = word.lower()
    if w in _LEXICON:
        return _LEXICON[w]
    if _NUMBER.fullmatch(w):
        return "NUM"
    if not any(ch.isalnum() for ch in w):
        return "PUNCT"
    for tag, endings in _SUFFIXES:
        if any(w.endswith(e) and len(w) - len(e) >= 3 and not (e == "s" and w.endswith("ss")) for e in endings):
            return tag
    return "OPEN"


@dataclass(frozen=True)
class TextCopy:
    """A perturbed copy of a training text: its words, ``None`` where a word is masked.

    Attributes:
        source: Index of the text it was made from.
        words: The copy's words in order; ``None`` marks a masked word.
    """

    source: int
    words: tuple[str | None, ...]

    def render(self, placeholder: str) -> str:
        """The copy as text, masked words written as ``placeholder`` (a tokenizer's [MASK] / [UNK] string)."""
        return " ".join(placeholder if w is None else w for w in self.words)


class _ClassSampler:
    """Draw a word of a class with probability proportional to its count in the corpus."""

    def __init__(self, texts: Sequence[str]) -> None:
        counts = Counter(w for text in texts for w in _WORD_RE.findall(text.lower()))
        by_class: dict[str, list[tuple[str, int]]] = {}
        for word, n in sorted(counts.items()):  # sorted: the same texts give the same draws
            by_class.setdefault(word_class(word), []).append((word, n))
        self.words = {c: [w for w, _ in items] for c, items in by_class.items()}
        self.cumulative = {c: list(accumulate(n for _, n in items)) for c, items in by_class.items()}

    def draw(self, word: str, rng: random.Random) -> str:
        c = word_class(word)
        cum = self.cumulative.get(c)
        if not cum:  # a class unseen in the corpus: keep the word
            return word
        return self.words[c][bisect.bisect_right(cum, rng.random() * cum[-1])]


def _check(copies: int, probs: dict[str, float], max_ngram: int) -> None:
    bad = {k: v for k, v in probs.items() if not 0 <= v <= 1}
    if copies < 0 or bad or max_ngram < 1:
        raise ConfigError(
            f"transfer copies need copies >= 0, probabilities in [0, 1] and max_ngram >= 1; got copies {copies}, "
            f"{', '.join(f'{k} {v}' for k, v in probs.items())}, max_ngram {max_ngram}"
        )


def tang_copies(
    texts: Sequence[str], copies: int, *, seed: int = 0, p_mask: float = 0.1, p_pos: float = 0.1, p_ng: float = 0.25,
    max_ngram: int = 5, corpus: Sequence[str] | None = None,
) -> list[TextCopy]:
    """Tang et al. 2019's copies of ``texts``: masking, same-class replacement, n-gram windows; up to ``copies`` each.

    Args:
        texts: N source texts, split into words by :data:`~distilens.data.tokenize.WORD_PATTERN`
            (a copy is its words joined by single spaces; replacement words are lower case).
        copies: Copies tried per text (Tang et al.: 20); duplicates and copies equal to
            their text are dropped, so a text may get fewer.
        seed: Seeds every draw.
        p_mask: Chance that a word is masked.
        p_pos: Chance that a word is replaced by a word of its :func:`word_class`, drawn from
            ``corpus`` in proportion to its count (the two are exclusive: p_mask + p_pos <= 1).
        p_ng: Chance that a copy keeps only a window of n words, n uniform in 1 … ``max_ngram``.
        max_ngram: Longest window.
        corpus: Texts the replacement words are drawn from (default: ``texts``).

    Returns:
        The copies, grouped by source in order. Each text's draws come from its own stream
        seeded by ``(seed, index)``, so the copies made with ``copies=k`` are the first of
        those made with any larger ``copies`` (the teacher can label the largest set once).
    """
    _check(copies, {"p_mask": p_mask, "p_pos": p_pos, "p_ng": p_ng}, max_ngram)
    if p_mask + p_pos > 1:
        raise ConfigError(f"transfer copies need p_mask + p_pos <= 1 (one draw decides both); got {p_mask} + {p_pos}")
    sampler = _ClassSampler(corpus if corpus is not None else texts) if p_pos > 0 else None
    out: list[TextCopy] = []
    for i, text in enumerate(texts):
        rng = random.Random(f"{seed}/{i}")  # each text its own stream: copies nest in `copies`
        words = _WORD_RE.findall(text)
        seen = {tuple(words)}
        for _ in range(copies):
            new: list[str | None] = []
            for w in words:
                u = rng.random()
                new.append(None if u < p_mask else sampler.draw(w, rng) if u < p_mask + p_pos and sampler else w)
            if len(new) > 1 and rng.random() < p_ng:
                n = rng.randint(1, min(max_ngram, len(new)))
                start = rng.randrange(len(new) - n + 1)
                new = new[start : start + n]
            key = tuple(new)
            if new and key not in seen:
                seen.add(key)
                out.append(TextCopy(i, key))
    return out


def augment_texts(
    texts: Sequence[str], copies: int, *, seed: int = 0, drop_prob: float = 0.1, ngram_prob: float = 0.25,
    max_ngram: int = 5,
) -> tuple[list[str], Tensor]:
    """The ``drop`` recipe: perturbed copies of ``texts``, up to ``copies`` per text, none equal to its text or to each other.

    Args:
        texts: N source texts.
        copies: Copies tried per text (>= 0).
        seed: Seeds the perturbations; the same arguments always give the same copies.
        drop_prob: Chance that each word is left out (a copy keeps at least one word).
        ngram_prob: Chance that a copy keeps only a window of 1 … ``max_ngram`` of its words.
        max_ngram: Longest window.

    Returns:
        ``(augmented, source)``: M new texts and (M,) int64, the index of each one's source.
    """
    _check(copies, {"drop": drop_prob, "ngram": ngram_prob}, max_ngram)
    if drop_prob == 1:
        raise ConfigError("transfer copies need drop < 1 (a copy keeps at least one word)")
    rng = random.Random(seed)
    out: list[str] = []
    source: list[int] = []
    for i, text in enumerate(texts):
        words = text.split()
        seen = {" ".join(words)}
        for _ in range(copies):
            kept = [w for w in words if rng.random() >= drop_prob]
            if not kept and words:
                kept = [words[rng.randrange(len(words))]]
            if len(kept) > 1 and rng.random() < ngram_prob:
                n = rng.randint(1, min(max_ngram, len(kept)))
                start = rng.randrange(len(kept) - n + 1)
                kept = kept[start : start + n]
            copy = " ".join(kept)
            if copy and copy not in seen:
                seen.add(copy)
                out.append(copy)
                source.append(i)
    return out, torch.tensor(source, dtype=torch.long)


def mask_placeholder(tokenizer: TextTokenizer, token: Literal["mask", "unk"]) -> str:
    """A string that ``tokenizer`` turns into exactly one token: its [MASK] (falling back to [UNK]) or its [UNK].

    The token's own name works for tokenizers that match special tokens in raw text (BERT's
    ``tokenizer.json``); a word-level vocabulary splits "[UNK]" into three words, so for it
    the placeholder is a word it has no entry for, which it maps to [UNK].
    """
    target = tokenizer.mask_id if token == "mask" and tokenizer.mask_id is not None else tokenizer.unk_id
    if target is None:
        raise DataError(f"the tokenizer has no [UNK] token, so transfer copies cannot mask words for it ({tokenizer})")
    bare = sorted(tokenizer.encode([""], max_length=8).ids[0].tolist())  # its special tokens ([CLS] [SEP]) and pads
    bare = [i for i in bare if i != tokenizer.pad_id]
    candidates = [tokenizer.id_to_token(target)] + [f"zzmask{k}zz" for k in range(100)]
    for text in candidates:
        ids = [i for i in tokenizer.encode([text], max_length=8).ids[0].tolist() if i != tokenizer.pad_id]
        if sorted(ids) == sorted(bare + [target]):
            return text
    raise DataError(f"no placeholder text tokenises to token {target} with {tokenizer}")  # pragma: no cover


def with_transfer_copies(
    bundle: DataBundle, copies: int, *, seed: int = 0, method: Literal["drop", "tang"] = "drop", **options: float,
) -> DataBundle:
    """``bundle`` with perturbed copies of its training texts appended to its train split.

    The copies carry their source's label (for a ``ce`` term), and are tokenised by the
    bundle's tokenizer and, where it differs, the teacher's, at the splits' widths. With
    ``method="tang"`` a masked word is the student tokenizer's [UNK] in the student's ids
    and the teacher tokenizer's [MASK] in the teacher's (its [UNK] when it has no mask
    token; a teacher that reads the student's ids sees the student's [UNK]);
    ``bundle.texts["train"]`` gets the student's side. Val and test are unchanged. The
    soft-label cache, keyed on the train split's contents, then holds the teacher's outputs
    on the copies too.

    Args:
        bundle: A text bundle (with ``texts`` and ``tokenizer``).
        copies: Copies tried per training text; 0 returns ``bundle``.
        seed: Seeds the perturbations.
        method: ``"drop"`` (:func:`augment_texts`) or ``"tang"`` (:func:`tang_copies`).
        **options: That recipe's options (``drop_prob``, ``ngram_prob``, ``max_ngram`` /
            ``p_mask``, ``p_pos``, ``p_ng``, ``max_ngram``).
    """
    if method not in ("drop", "tang"):
        raise ConfigError(f"distill.transfer.method must be 'drop' or 'tang', got {method!r}")
    if copies == 0:
        return bundle
    if bundle.texts is None or bundle.tokenizer is None:
        raise ConfigError("distill.transfer_copies needs text data (data.text set); set it to 0 for other data")
    train_texts = bundle.texts["train"]
    if method == "drop":
        student_texts, source = augment_texts(train_texts, copies, seed=seed, **options)  # type: ignore[arg-type]
        teacher_texts = student_texts
    else:
        made = tang_copies(train_texts, copies, seed=seed, **options)  # type: ignore[arg-type]
        source = torch.tensor([c.source for c in made], dtype=torch.long)
        student_texts = [c.render(mask_placeholder(bundle.tokenizer, "unk")) for c in made] if made else []
        teacher_texts = student_texts
        if bundle.teacher_view is not None and made:
            mask = mask_placeholder(bundle.teacher_view.tokenizer, "mask")
            teacher_texts = [c.render(mask) for c in made]

    def grow(inputs: Tensor, tokenizer: Any, extra: list[str]) -> Tensor:
        return torch.cat([inputs, tokenizer.encode(extra, int(inputs.shape[1]), pad_to_max=True).ids]) if extra else inputs

    targets = torch.cat([bundle.train.targets, bundle.train.targets[source]])
    view = bundle.teacher_view
    if view is not None:
        view = replace(view, inputs={**view.inputs, "train": grow(view.inputs["train"], view.tokenizer, teacher_texts)})
    return replace(
        bundle, train=Split(grow(bundle.train.inputs, bundle.tokenizer, student_texts), targets),
        texts={**bundle.texts, "train": list(train_texts) + student_texts}, teacher_view=view,
    )
