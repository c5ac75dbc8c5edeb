"""A larger transfer set for text distillation: perturbed copies of the training texts.

Distillation only needs the teacher's outputs, not labels, so the student can learn from
texts nobody labelled: Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks", §3.2) perturb each training sentence (masking words, sampling an
n-gram) and let the teacher label the copies. Here a copy drops each whitespace-separated
word with probability ``drop_prob`` (a tokenizer-free stand-in for their [MASK], which a
word-level student vocabulary does not have), then, with probability ``ngram_prob``, keeps
only a random window of 1 … ``max_ngram`` of the remaining words. The copies are plain
strings, so the student's and the teacher's tokenizers both read them.

Example:
    >>> augment_texts(["a fine , funny film that moves fast and ends well"], copies=5, seed=0)
    (['a fine , funny', 'and ends well'], tensor([0, 0]))
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .bundle import DataBundle, Split

__all__ = ["augment_texts", "with_transfer_copies"]


def augment_texts(
    texts: Sequence[str], copies: int, *, seed: int = 0, drop_prob: float = 0.1, ngram_prob: float = 0.25,
    max_ngram: int = 5,
) -> tuple[list[str], Tensor]:
    """Perturbed copies of ``texts``: up to ``copies`` per text, none equal to its text or to each other.

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
    if copies < 0 or not 0 <= drop_prob < 1 or not 0 <= ngram_prob <= 1 or max_ngram < 1:
        raise ConfigError(
            f"transfer copies need copies >= 0, 0 <= drop < 1, 0 <= ngram <= 1 and max_ngram >= 1; got {copies}, "
            f"{drop_prob}, {ngram_prob}, {max_ngram}"
        )
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


def with_transfer_copies(bundle: DataBundle, copies: int, *, seed: int = 0, **options: float) -> DataBundle:
    """``bundle`` with perturbed copies of its training texts appended to its train split.

    The copies carry their source's label (for a ``ce`` term), and are tokenised by the
    bundle's tokenizer and, where it differs, the teacher's, at the splits' widths. Val and
    test are unchanged. The soft-label cache, keyed on the train split's contents, then holds
    the teacher's outputs on the copies too.

    Args:
        bundle: A text bundle (with ``texts`` and ``tokenizer``).
        copies: Copies tried per training text (see :func:`augment_texts`); 0 returns ``bundle``.
        seed: Seeds the perturbations.
        **options: ``drop_prob``, ``ngram_prob``, ``max_ngram`` of :func:`augment_texts`.
    """
    if copies == 0:
        return bundle
    if bundle.texts is None or bundle.tokenizer is None:
        raise ConfigError("distill.transfer_copies needs text data (data.text set); set it to 0 for other data")
    extra, source = augment_texts(bundle.texts["train"], copies, seed=seed, **options)  # type: ignore[arg-type]

    def grow(inputs: Tensor, tokenizer: Any) -> Tensor:
        return torch.cat([inputs, tokenizer.encode(extra, int(inputs.shape[1]), pad_to_max=True).ids]) if extra else inputs

    targets = torch.cat([bundle.train.targets, bundle.train.targets[source]])
    view = bundle.teacher_view
    if view is not None:
        view = replace(view, inputs={**view.inputs, "train": grow(view.inputs["train"], view.tokenizer)})
    return replace(
        bundle, train=Split(grow(bundle.train.inputs, bundle.tokenizer), targets),
        texts={**bundle.texts, "train": list(bundle.texts["train"]) + extra}, teacher_view=view,
    )
