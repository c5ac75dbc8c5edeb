"""Transfer-set copies of training texts (Tang et al. 2019): what a copy may be, and the grown bundle."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from distilens.data.text import load_text
from distilens.data.text_augment import (
    TANG_DEFAULTS, augment_texts, mask_placeholder, tang_copies, with_transfer_copies, word_class,
)
from distilens.data.tokenize import TextTokenizer
from distilens.errors import ConfigError

TEXTS = [f"{'a good fine' if i % 2 else 'a bad poor'} film number {i} with some more words" for i in range(30)] + ["one"]


def _bundle(tmp_path, tokenizer: str, teacher_tok: TextTokenizer, max_length: int):
    """A text bundle of the first 30 TEXTS (alternating labels) read from a CSV, with a teacher tokenizer."""
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{"pos" if i % 2 else "neg"}\n' for i, t in enumerate(TEXTS[:30])),
                    encoding="utf-8")
    return load_text(path, text="text", target="label", tokenizer=tokenizer, teacher_tokenizer=teacher_tok,
                     max_length=max_length)


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
    teacher_tok = TextTokenizer.word_level(["good", "film", "bad", "words"])
    bundle = _bundle(tmp_path, "word", teacher_tok, 8)
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


# --------------------------------------------------------------------------- Tang et al.'s recipe

def _wordpiece_teacher() -> TextTokenizer:
    from distilens.testing.text import wordpiece

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "fine", "poor", "film", "number",
             "with", "some", "more", "words"]
    tok = wordpiece(vocab)
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])  # as BERT's tokenizer.json has them
    return TextTokenizer(tok)


def test_word_classes_from_lexicon_shapes_and_suffixes() -> None:
    cases = {"the": "DET", "They": "PRON", "into": "ADP", "but": "CONJ", "isn't": "AUX", "not": "NEG",
             "quickly": "ADV", "boring": "ING", "bored": "ED", "darkness": "NOUN", "famous": "ADJ", "films": "S",
             "class": "OPEN", "film": "OPEN", "1990s": "NUM", "three": "NUM", "!": "PUNCT", "...": "PUNCT",
             "sing": "OPEN", "red": "OPEN"}  # "sing", "red": the stem would be shorter than 3 letters
    assert {w: word_class(w) for w in cases} == cases


def test_tang_copies_mask_replace_and_window_as_asked() -> None:
    words = [t.split() for t in TEXTS]
    masked = tang_copies(TEXTS, 3, seed=0, p_mask=1.0, p_pos=0.0, p_ng=0.0)
    assert {c.source for c in masked} == set(range(len(TEXTS)))  # one all-masked copy per text, the rest duplicates
    assert all(set(c.words) == {None} and len(c.words) == len(words[c.source]) for c in masked)
    assert masked[0].render("[MASK]") == " ".join(["[MASK]"] * len(words[0]))
    corpus_counts = Counter(w for t in TEXTS for w in t.split())
    replaced = tang_copies(TEXTS, 4, seed=1, p_mask=0.0, p_pos=1.0, p_ng=0.0)
    for c in replaced:
        assert len(c.words) == len(words[c.source])
        assert all(word_class(new) == word_class(old) and new in corpus_counts for new, old in zip(c.words, words[c.source]))
    windows = tang_copies(TEXTS, 5, seed=2, p_mask=0.0, p_pos=0.0, p_ng=1.0, max_ngram=2)
    for c in windows:
        text = " ".join(words[c.source])
        assert 1 <= len(c.words) <= 2 and f" {c.render('?')} " in f" {text} "  # a contiguous window
    again = tang_copies(TEXTS, 5, seed=2, p_mask=0.0, p_pos=0.0, p_ng=1.0, max_ngram=2)
    assert again == windows and tang_copies(TEXTS, 5, seed=3, p_mask=0.0, p_pos=0.0, p_ng=1.0, max_ngram=2) != windows


def test_tang_copies_at_the_papers_rates_are_distinct_and_drawn_by_count() -> None:
    made = tang_copies(TEXTS, 20, seed=0, **TANG_DEFAULTS)
    sources = [c.source for c in made]
    assert sources == sorted(sources)
    for i in set(sources):
        mine = [c.words for c in made if c.source == i]
        assert len(mine) == len(set(mine)) <= 20 and tuple(TEXTS[i].split()) not in mine
    full = [c for c in made if len(c.words) == len(TEXTS[c.source].split())]  # copies without a window
    n_words = sum(len(c.words) for c in full)
    share_masked = sum(w is None for c in full for w in c.words) / n_words
    assert 0.07 < share_masked < 0.13  # p_mask = 0.1 (copies equal to their text are dropped: a little above)
    # Replacements follow the corpus counts: "film" 90 times, "movie" 10 times, both OPEN words.
    corpus = ["film"] * 90 + ["movie"] * 10
    drawn = tang_copies(["the play"] * 400, 1, seed=0, p_mask=0.0, p_pos=1.0, p_ng=0.0, corpus=corpus)
    picks = Counter(c.words[1] for c in drawn)
    assert set(picks) == {"film", "movie"} and 0.83 < picks["film"] / (picks["film"] + picks["movie"]) < 0.96
    with pytest.raises(ConfigError, match="p_mask \\+ p_pos"):
        tang_copies(TEXTS, 1, p_mask=0.6, p_pos=0.6)
    with pytest.raises(ConfigError, match="transfer copies"):
        tang_copies(TEXTS, 1, p_ng=1.5)


def test_mask_placeholders_tokenise_to_one_token() -> None:
    teacher = _wordpiece_teacher()
    assert mask_placeholder(teacher, "mask") == "[MASK]" and mask_placeholder(teacher, "unk") == "[UNK]"
    student = TextTokenizer.word_level(TEXTS)
    unk = mask_placeholder(student, "unk")
    assert student.encode([f"good {unk} film"], 8).ids[0].tolist() == [student.token_to_id("good"), student.unk_id,
                                                                        student.token_to_id("film")]
    assert mask_placeholder(student, "mask") == unk  # no [MASK] in a word vocabulary: its [UNK]


def test_grown_bundle_with_tang_copies_masks_each_side_with_its_own_token(tmp_path) -> None:
    teacher_tok = _wordpiece_teacher()
    bundle = _bundle(tmp_path, "word", teacher_tok, 16)
    grown = with_transfer_copies(bundle, 4, seed=1, method="tang", p_mask=0.3, p_pos=0.0, p_ng=0.0)
    n = len(bundle.train)
    made = tang_copies(bundle.texts["train"], 4, seed=1, p_mask=0.3, p_pos=0.0, p_ng=0.0)
    assert len(grown.train) == n + len(made) and torch.equal(grown.train.targets[n:],
                                                            bundle.train.targets[[c.source for c in made]])
    s_ids, t_ids = grown.train.inputs[n:], grown.for_teacher().train.inputs[n:]
    for k, c in enumerate(made):
        masked = [j for j, w in enumerate(c.words) if w is None]
        assert [j for j, i in enumerate(s_ids[k].tolist()) if i == bundle.tokenizer.unk_id] == masked  # one word, one id
        assert int((t_ids[k] == teacher_tok.mask_id).sum()) == len(masked)
    assert grown.texts["train"][n:] == [c.render(mask_placeholder(bundle.tokenizer, "unk")) for c in made]
    assert with_transfer_copies(bundle, 3, seed=1).train.inputs.shape[0] == n + len(augment_texts(bundle.texts["train"], 3, seed=1)[0])
    with pytest.raises(ConfigError, match="method"):
        with_transfer_copies(bundle, 3, method="eda")  # type: ignore[arg-type]


def test_config_keys_select_the_recipe() -> None:
    from distilens.config import load_config

    cfg = load_config(None, overrides=["distill.transfer_copies=20", "distill.transfer.method=tang"])
    assert cfg.distill.transfer.options() == {"method": "tang", **TANG_DEFAULTS}
    assert load_config(None).distill.transfer.options() == {"method": "drop"}  # today's copies by default
    with pytest.raises(ConfigError, match="p_mask"):
        load_config(None, overrides=["distill.transfer.p_mask=0.7", "distill.transfer.p_pos=0.7"])


def test_tang_copies_nest_in_the_number_of_copies() -> None:
    small = tang_copies(TEXTS, 4, seed=5, **TANG_DEFAULTS)
    large = tang_copies(TEXTS, 12, seed=5, **TANG_DEFAULTS)
    for i in range(len(TEXTS)):
        mine, theirs = [c for c in small if c.source == i], [c for c in large if c.source == i]
        assert theirs[: len(mine)] == mine  # the same first copies, then more


def test_tang_copies_for_a_student_reading_the_teachers_ids(tmp_path) -> None:
    teacher_tok = _wordpiece_teacher()
    bundle = _bundle(tmp_path, "teacher", teacher_tok, 16)
    assert bundle.teacher_view is None  # one set of ids: the student's rule ([UNK]) applies to both
    grown = with_transfer_copies(bundle, 2, seed=0, method="tang", p_mask=0.5, p_pos=0.0, p_ng=0.0)
    made = tang_copies(bundle.texts["train"], 2, seed=0, p_mask=0.5, p_pos=0.0, p_ng=0.0)
    ids = grown.train.inputs[len(bundle.train):]
    for k, c in enumerate(made):
        assert int((ids[k] == teacher_tok.unk_id).sum()) >= sum(w is None for w in c.words)  # + words it does not know
        assert int((ids[k] == teacher_tok.mask_id).sum()) == 0


def test_the_baseline_gets_the_students_steps_when_copies_grow_the_transfer_set() -> None:
    from distilens.pipeline.training import baseline_epochs

    assert baseline_epochs(3, 8925 * 21, 8925) == 63  # 20 copies per text
    assert baseline_epochs(10, 500, 500) == 10  # no copies: the student's epochs
    assert baseline_epochs(2, 101, 100) == 2  # never fewer than the student's epochs
