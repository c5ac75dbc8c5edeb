"""Transfer-set copies of training texts (Tang et al. 2019): what a copy may be, and the grown bundle."""

from __future__ import annotations

import pytest
import torch

from distilens.data.text import load_text
from distilens.data.text_augment import augment_texts, with_transfer_copies
from distilens.data.tokenize import TextTokenizer
from distilens.errors import ConfigError

TEXTS = [f"{'a good fine' if i % 2 else 'a bad poor'} film number {i} with some more words" for i in range(30)] + ["one"]


def _is_subsequence(copy: list[str], words: list[str]) -> bool:
    it = iter(words)
    return all(w in it for w in copy)  # `in` advances the iterator: order is kept


def test_copies_are_new_ordered_subsets_of_their_source_and_seeded() -> None:
    out, source = augment_texts(TEXTS, copies=4, seed=3)
    assert len(out) == len(source) > len(TEXTS)  # most texts give several distinct copies
    assert source.dtype == torch.long and torch.all(source[1:] >= source[:-1])  # grouped by source, in order
    for text, i in zip(out, source.tolist()):
        assert text and text != TEXTS[i] and _is_subsequence(text.split(), TEXTS[i].split())
    for i in set(source.tolist()):
        copies = [t for t, s in zip(out, source.tolist()) if s == i]
        assert len(copies) == len(set(copies)) <= 4
    assert len(TEXTS) - 1 not in source.tolist()  # "one": its only copy is itself
    again, source_again = augment_texts(TEXTS, copies=4, seed=3)
    assert again == out and torch.equal(source_again, source)
    assert augment_texts(TEXTS, copies=4, seed=4)[0] != out
    none, no_source = augment_texts(TEXTS, copies=0)
    assert none == [] and no_source.shape == (0,)


def test_probabilities_shape_the_copies() -> None:
    only_drops, _ = augment_texts(TEXTS, copies=3, seed=0, drop_prob=0.3, ngram_prob=0.0)
    windows, _ = augment_texts(TEXTS, copies=3, seed=0, drop_prob=0.0, ngram_prob=1.0, max_ngram=2)
    assert all(1 <= len(t.split()) <= 2 for t in windows)  # every copy is a window of one or two words
    mean_words = sum(len(t.split()) for t in only_drops) / len(only_drops)
    assert 5 < mean_words < 9  # 9 or 10 words, ~30% dropped
    for bad in ({"copies": -1}, {"copies": 1, "drop_prob": 1.0}, {"copies": 1, "ngram_prob": 1.5},
                {"copies": 1, "max_ngram": 0}):
        with pytest.raises(ConfigError, match="transfer copies"):
            augment_texts(TEXTS, **bad)


def test_grown_bundle_appends_tokenised_copies_for_student_and_teacher(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{"pos" if i % 2 else "neg"}\n' for i, t in enumerate(TEXTS[:30])),
                    encoding="utf-8")
    teacher_tok = TextTokenizer.word_level(["good", "film", "bad", "words"])
    bundle = load_text(path, text="text", target="label", tokenizer="word", teacher_tokenizer=teacher_tok, max_length=8)
    assert with_transfer_copies(bundle, 0) is bundle
    grown = with_transfer_copies(bundle, 3, seed=1)
    n = len(bundle.train)
    extra, source = augment_texts(bundle.texts["train"], 3, seed=1)
    assert len(grown.train) == n + len(extra) and grown.texts["train"] == bundle.texts["train"] + extra
    assert torch.equal(grown.train.inputs[:n], bundle.train.inputs)
    assert torch.equal(grown.train.inputs[n:], bundle.tokenizer.encode(extra, 8, pad_to_max=True).ids[:, : bundle.spec.shape[0]])
    assert torch.equal(grown.train.targets[n:], bundle.train.targets[source])  # each copy keeps its source's label
    t_ids = grown.for_teacher().train.inputs
    assert t_ids.shape == (n + len(extra), bundle.teacher_view.spec.shape[0])
    assert torch.equal(t_ids[n:], teacher_tok.encode(extra, t_ids.shape[1], pad_to_max=True).ids)
    assert grown.val is bundle.val and grown.test is bundle.test and grown.train.fingerprint() != bundle.train.fingerprint()
    assert len(bundle.train) == n and len(bundle.texts["train"]) == n  # the source bundle is untouched
