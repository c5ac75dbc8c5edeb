"""TextTokenizer: offsets, padding, truncation, unknown words, vocabulary order, JSON round trip."""

from __future__ import annotations

import re

import pytest
import torch

from distilens.data.tokenize import WORD_PATTERN, TextTokenizer
from distilens.errors import DataError

tokenizers = pytest.importorskip("tokenizers")

TEXTS = [
    "A good film, truly good.",
    "Don't watch this bad film!",
    "Café au lait: naïve but good",
    "   bad   ",
]


def _wordpiece() -> TextTokenizer:
    """A tiny BERT-style WordPiece tokenizer with [CLS] ... [SEP], built in memory."""
    vocab = {t: i for i, t in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film", "bad", "##s", "a", "!"]
    )}
    tk = tokenizers
    tok = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tk.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return TextTokenizer(tok)


def test_offsets_map_back_to_the_words_of_each_text() -> None:
    tok = TextTokenizer.word_level(TEXTS)
    enc = tok.encode(TEXTS, max_length=64)
    for text, offs in zip(TEXTS, enc.offsets):
        expected = [m.group(0) for m in re.finditer(WORD_PATTERN, text)]
        assert [text[a:b] for a, b in offs] == expected
    # Lower-casing changes the token, never the span in the raw text.
    assert TEXTS[2][slice(*enc.offsets[2][0])] == "Café"
    assert tok.id_to_token(int(enc.ids[2, 0])) == "café"


def test_padding_truncation_and_shape() -> None:
    tok = TextTokenizer.word_level(TEXTS)
    enc = tok.encode(["good film", "bad"], max_length=10)
    assert enc.ids.dtype == torch.long and enc.ids.shape == (2, 2)  # longest row, not max_length
    assert enc.ids[1, 1].item() == tok.pad_id == 0
    assert enc.lengths.tolist() == [2, 1]
    fixed = tok.encode(["good film", "bad"], max_length=10, pad_to_max=True)
    assert fixed.ids.shape == (2, 10) and (fixed.ids[:, 2:] == tok.pad_id).all()
    cut = tok.encode(["a good film truly good"], max_length=3)
    assert cut.ids.shape == (1, 3) and len(cut.offsets[0]) == 3
    assert tok.decode_tokens(cut.ids[0]) == ["a", "good", "film"]
    with pytest.raises(DataError, match="max_length"):
        tok.encode(["x"], max_length=0)


def test_unknown_words_and_min_freq_and_max_vocab() -> None:
    tok = TextTokenizer.word_level(TEXTS, min_freq=2)
    # "good" x4, "film" x2, "bad" x2, "a" x1 (lower-cased "A"), ...
    enc = tok.encode(["good zebra a"], max_length=8)
    assert enc.ids[0].tolist() == [tok.token_to_id("good"), tok.unk_id, tok.unk_id]
    assert tok.unk_id == 1 and tok.mask_id is None
    small = TextTokenizer.word_level(TEXTS, max_vocab=4)
    assert small.vocab_size == 4
    with pytest.raises(DataError, match="max_vocab"):
        TextTokenizer.word_level(TEXTS, max_vocab=2)


def test_vocabulary_order_is_count_then_token() -> None:
    tok = TextTokenizer.word_level(["b c a", "c b", "c", "z y"])
    order = [tok.id_to_token(i) for i in range(tok.vocab_size)]
    # c:3, b:2, then the count-1 words alphabetically
    assert order == ["[PAD]", "[UNK]", "c", "b", "a", "y", "z"]
    again = TextTokenizer.word_level(["z y", "c", "c b", "b c a"])  # row order is irrelevant
    assert [again.id_to_token(i) for i in range(again.vocab_size)] == order


def test_lowercase_off_keeps_case() -> None:
    tok = TextTokenizer.word_level(["Good good"], lowercase=False)
    assert tok.vocab_size == 4
    enc = tok.encode(["Good good GOOD"], max_length=5)
    assert enc.ids[0, 2].item() == tok.unk_id


def test_literal_special_token_text_is_not_padding() -> None:
    tok = TextTokenizer.word_level(["the [PAD] token"])
    enc = tok.encode(["[PAD]"], max_length=5)
    assert tok.pad_id not in enc.ids[0].tolist()


def test_json_round_trip_gives_identical_encodings(tmp_path) -> None:
    for tok in (TextTokenizer.word_level(TEXTS), _wordpiece()):
        again = TextTokenizer.from_json(tok.to_json())
        a, b = tok.encode(TEXTS, max_length=12), again.encode(TEXTS, max_length=12)
        assert torch.equal(a.ids, b.ids) and a.offsets == b.offsets
        assert (again.pad_id, again.unk_id, again.mask_id, again.vocab_size) == (
            tok.pad_id, tok.unk_id, tok.mask_id, tok.vocab_size
        )
        assert again.fingerprint() == tok.fingerprint()
        path = tok.save(tmp_path / "tokenizer.json")
        assert torch.equal(TextTokenizer.from_file(path).encode(TEXTS, 12).ids, a.ids)


def test_wordpiece_special_tokens_have_empty_offsets_and_survive_truncation() -> None:
    tok = _wordpiece()
    assert (tok.pad_id, tok.unk_id, tok.mask_id) == (0, 1, 4)
    text = "Good films!"
    enc = tok.encode([text], max_length=16)
    assert tok.decode_tokens(enc.ids[0]) == ["[CLS]", "good", "film", "##s", "!", "[SEP]"]
    assert enc.offsets[0] == [(0, 0), (0, 4), (5, 9), (9, 10), (10, 11), (0, 0)]
    cut = tok.encode([text], max_length=4)
    assert tok.decode_tokens(cut.ids[0]) == ["[CLS]", "good", "film", "[SEP]"]


def test_bad_files_and_tokenizers_without_pad() -> None:
    with pytest.raises(DataError, match="not found"):
        TextTokenizer.from_file("/nonexistent/tokenizer.json")
    with pytest.raises(DataError, match="tokenizer.json"):
        TextTokenizer.from_json("{not json")
    tk = tokenizers
    bare = tk.Tokenizer(tk.models.WordLevel({"x": 0, "[UNK]": 1}, unk_token="[UNK]"))
    with pytest.raises(DataError, match="pad"):
        TextTokenizer(bare)
