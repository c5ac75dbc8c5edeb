"""Text tables: csv/tsv/jsonl reading, errors naming the line, splits, tokenisation, defaults."""

from __future__ import annotations

import json

import pytest
import torch

from distilens.config import load_config
from distilens.data import load_dataset
from distilens.data.text import TextPreprocessor, load_text
from distilens.data.tokenize import TextTokenizer
from distilens.errors import ConfigError, DataError
from distilens.pipeline.context import with_defaults as apply_text_defaults

ROWS = [(f"{'good fine' if i % 2 else 'bad poor'} film number {i}", "pos" if i % 2 else "neg") for i in range(40)]


def _csv(tmp_path, rows=ROWS, header="text,label", name="t.csv", sep=","):
    lines = [header] + [f'"{t}"{sep}{y}' if sep == "," else f"{t}{sep}{y}" for t, y in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _load(path, **kw):
    return load_dataset(f"csv:{path}", text=kw.pop("text", "text"), target=kw.pop("target", "label"), **kw)


def test_csv_bundle_holds_ids_texts_and_tokenizer(tmp_path) -> None:
    b = _load(_csv(tmp_path), max_length=5)
    assert b.spec.kind == "text" and b.spec.shape == (5,) and b.spec.class_names == ("neg", "pos")
    assert b.train.inputs.dtype == torch.long and b.sizes() == {"n_train": 28, "n_val": 4, "n_test": 8}
    assert b.spec.vocab_size == b.tokenizer.vocab_size and b.spec.pad_id == b.tokenizer.pad_id
    for split in ("train", "val", "test"):
        texts, ids = b.texts[split], getattr(b, split).inputs
        assert len(texts) == len(ids)
        assert torch.equal(b.tokenizer.encode(texts, 5, pad_to_max=True).ids, ids)  # same rows, same order
        labels = getattr(b, split).targets.tolist()
        assert all(("good" in t) == (y == 1) for t, y in zip(texts, labels))
    assert b.teacher_view is None and b.for_teacher().test is b.test


def test_vocabulary_is_fitted_on_the_training_split_only(tmp_path) -> None:
    b = _load(_csv(tmp_path))
    train_numbers = {t.split()[-1] for t in b.texts["train"]}
    test_only = [t.split()[-1] for t in b.texts["test"] if t.split()[-1] not in train_numbers]
    assert test_only and all(b.tokenizer.token_to_id(w) is None for w in test_only)


def test_length_is_the_longest_row_up_to_max_length(tmp_path) -> None:
    path = _csv(tmp_path)
    assert _load(path).spec.shape == (5,)  # "good fine film number 12"
    assert _load(path, max_length=3).spec.shape == (3,)


def test_split_is_deterministic_and_seeded(tmp_path) -> None:
    path = _csv(tmp_path)
    a, b, c = _load(path, seed=0), _load(path, seed=0), _load(path, seed=1)
    assert a.texts == b.texts and torch.equal(a.train.inputs, b.train.inputs)
    assert a.texts["test"] != c.texts["test"]
    # Stratified: both classes in every split.
    assert all(len(getattr(a, s).targets.unique()) == 2 for s in ("train", "val", "test"))


def test_tsv_and_jsonl_read_like_csv(tmp_path) -> None:
    ref = _load(_csv(tmp_path))
    tsv = _load(_csv(tmp_path, header="text\tlabel", name="t.tsv", sep="\t"))
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": y, "id": i}) for i, (t, y) in enumerate(ROWS)) + "\n\n")
    js = _load(jsonl)
    for other in (tsv, js):
        assert other.texts == ref.texts and torch.equal(other.train.inputs, ref.train.inputs)
    with pytest.raises(DataError, match="set data.text"):
        load_dataset(f"csv:{jsonl}", target="label")


def test_numeric_labels_sort_as_numbers(tmp_path) -> None:
    rows = [(t, "10" if y == "pos" else "2") for t, y in ROWS]
    assert _load(_csv(tmp_path, rows=rows)).spec.class_names == ("2", "10")


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("text,label\nok,a\n   ,b\nfine,a\n", {}, r"text column 'text' is empty in line\(s\) 3"),
        ("text,label\nok,a\nfine,\nyes,b\n", {}, r"target column 'label' is empty in line\(s\) 3"),
        ("text,label\nok,a\nfine,a\n", {}, "has one class"),
        ("txt,label\nok,a\nfine,b\n", {}, "column 'text' not found in t.csv \\(did you mean 'txt'\\?\\)"),
        ("text,labels\nok,a\nfine,b\n", {}, r"data.target: column 'label' not found in t.csv \(did you mean 'labels'"),
        ("text,label\nok,a\nfine,b,c\n", {}, "line 3 has 3 values"),
        ("text,label\n", {}, "no data rows"),
        ("text,label\nok,a\n", {"target": None}, "data.target: a text source needs this column"),
        ("text,label\nok,a\n", {"target": "text"}, "both 'text'"),
    ],
)
def test_reader_errors_name_the_line(tmp_path, content, kwargs, message) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        _load(path, **kwargs)


def test_undecodable_bytes_and_bad_json_name_the_line(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\nok,a\n".encode() + b"caf\xe9 au lait,b\n")
    with pytest.raises(DataError, match=r"line 3: byte 0xe9 is not UTF-8"):
        _load(path)
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"text": "ok", "label": "a"}\n{"text": "no" "label": "b"}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        _load(jl)
    jl.write_text('{"text": "ok", "label": "a"}\n["x"]\n')
    with pytest.raises(DataError, match="line 2 is a JSON list"):
        _load(jl)
    jl.write_text('{"text": "ok", "label": "a"}\n{"text": null, "label": "b"}\n')
    with pytest.raises(DataError, match=r"empty in line\(s\) 2"):
        _load(jl)
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "missing.csv")


def test_quoted_multiline_texts_keep_their_start_line(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label\n"two\nlines",a\n"",b\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"empty in line\(s\) 4"):
        _load(path)


def test_teacher_tokenizer_gives_teacher_inputs_for_the_same_rows(tmp_path) -> None:
    path = _csv(tmp_path)
    teacher_tok = TextTokenizer.word_level(["good", "film", "bad"], lowercase=True)
    b = load_text(path, text="text", target="label", teacher_tokenizer=teacher_tok, tokenizer="word")
    assert b.teacher_view.tokenizer is teacher_tok and b.teacher_view.spec.vocab_size == teacher_tok.vocab_size
    for split in ("train", "val", "test"):
        ids = teacher_tok.encode(b.texts[split], 128).ids
        got = getattr(b.for_teacher(), split)
        assert torch.equal(got.inputs[:, : ids.shape[1]], ids) and torch.equal(got.targets, getattr(b, split).targets)
    shared = load_text(path, text="text", target="label", teacher_tokenizer=teacher_tok)  # default: the teacher's
    assert shared.tokenizer is teacher_tok and shared.teacher_view is None
    with pytest.raises(ConfigError, match="data.tokenizer"):
        load_text(path, text="text", target="label", tokenizer="teacher")


def test_text_preprocessor_reads_and_pads_to_the_model_length(tmp_path) -> None:
    b = _load(_csv(tmp_path))
    pre = TextPreprocessor(b.tokenizer, "text", b.spec.shape[0])
    inputs = pre.read(_csv(tmp_path, rows=[("good", "x"), ("bad film", "y")], name="new.csv"))
    assert inputs.names == ["new.csv:line 2", "new.csv:line 3"] and inputs.texts == ["good", "bad film"]
    ids = inputs.all()
    assert ids.shape == (2, b.spec.shape[0]) and (ids[:, 2:] == b.spec.pad_id).all()
    assert torch.equal(ids, pre.transform(inputs.texts))


def test_text_defaults_fill_only_what_the_user_left_unset() -> None:
    base = ["data.source=csv:x.csv", "data.text=t", "data.target=y"]
    cfg = apply_text_defaults(load_config(None, base))
    assert (cfg.teacher.arch, cfg.student.arch) == ("tiny_transformer", "embedding_bag")
    assert cfg.teacher.args == {"dim": 128, "layers": 2, "heads": 4}
    cfg = apply_text_defaults(load_config(None, base + ["student.arch=text_cnn", "teacher.args.layers=1"]))
    assert cfg.student.arch == "text_cnn" and cfg.student.args == {}  # not the image width: 8
    assert cfg.teacher.arch == "tiny_transformer" and cfg.teacher.args == {"layers": 1}  # args set: kept
    images = load_config(None, [])
    assert apply_text_defaults(images) is images
