"""One Preprocessor protocol for every kind: save → load → read gives the training inputs bitwise."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distilens.data import (
    DATASETS,
    IMAGE_ERRORS,
    PREPROCESSING_FILE,
    PREPROCESSORS,
    DataBundle,
    ImagePreprocessor,
    Preprocessor,
    TablePreprocessor,
    TextPreprocessor,
    load_dataset,
    load_preprocessing,
    split_indices,
)
from distilens.errors import DataError


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (7, 9, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def _table(path: Path) -> Path:
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "city", "income", "label"])
        for i in range(60):
            w.writerow([rng.randint(18, 80), rng.choice(["Lyon", "Oslo", ""]), "" if i % 7 == 0 else rng.gauss(50, 9), i % 2])
    return path


def _texts(path: Path) -> Path:
    rng = random.Random(1)
    words = "good bad film plot actor great awful dull".split()
    rows = [[" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))), i % 2] for i in range(60)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["review", "label"], *rows])
    return path


def _saved(bundle: DataBundle, folder: Path) -> Preprocessor:
    """``bundle.preprocessing`` saved into ``folder`` and loaded back, as a run folder's would be."""
    bundle.preprocessing.save(folder)
    assert json.loads((folder / PREPROCESSING_FILE).read_text())["format"].startswith("distilens-")
    return load_preprocessing(folder, bundle.spec)


def test_every_kind_implements_the_protocol() -> None:
    assert PREPROCESSORS.names() == ["image", "table", "text"]
    for kind in PREPROCESSORS:
        cls = PREPROCESSORS.get(kind)
        assert cls.kind == kind
        for verb in ("to_dict", "from_dict", "from_spec", "save", "load", "read"):
            assert callable(getattr(cls, verb)), (kind, verb)


def test_image_folder_round_trip_reads_the_training_inputs(tmp_path: Path) -> None:
    root = _images(tmp_path / "pets")
    memory = load_dataset(f"imagefolder:{root}", image_size=[6, 8], val_fraction=0.2, test_fraction=0.2)
    lazy = load_dataset(f"imagefolder:{root}", image_size=[6, 8], val_fraction=0.2, test_fraction=0.2, lazy=True, num_workers=0)
    pre = _saved(memory, tmp_path / "run")
    assert isinstance(pre, ImagePreprocessor) and isinstance(pre, Preprocessor) and pre == memory.preprocessing
    assert pre == ImagePreprocessor.from_spec(memory.spec)  # what an old run folder falls back to
    files = lazy.test.inputs.files  # the test split's files, in split order
    got = torch.cat([pre.read(f).all() for f in files])
    assert torch.equal(got, memory.test.inputs) and torch.equal(got, lazy.test.inputs[:])
    folder = pre.read(root)
    assert folder.names[:2] == ["cat/0.png", "cat/1.png"] and len(folder) == 20
    assert torch.equal(folder.batch(0, 3), pre.read(root / "cat").batch(0, 3))


def test_csv_table_round_trip_reads_the_training_inputs(tmp_path: Path) -> None:
    path = _table(tmp_path / "loans.csv")
    with pytest.warns(UserWarning, match="imputed"):
        bundle = load_dataset(f"csv:{path}", target="label", seed=4)
    pre = _saved(bundle, tmp_path / "run")
    assert isinstance(pre, TablePreprocessor) and pre.to_dict() == bundle.preprocessing.to_dict()
    inputs = pre.read(path)  # the target column is ignored
    assert inputs.names[0] == "loans.csv:row 2" and len(inputs) == 60
    test = split_indices(torch.tensor([i % 2 for i in range(60)]), seed=4, val_fraction=0.1, test_fraction=0.2).test
    assert torch.equal(inputs.all()[test], bundle.test.inputs)


def test_builtin_table_round_trip_reads_the_training_inputs(tmp_path: Path) -> None:
    bundle = load_dataset("builtin:wine", seed=2)
    pre = _saved(bundle, tmp_path / "run")
    assert isinstance(pre, TablePreprocessor) and pre.feature_names == list(bundle.spec.feature_names)
    raw = DATASETS.get("wine")(2)
    test = split_indices(raw.targets, seed=2, val_fraction=0.1, test_fraction=0.2).test
    path = tmp_path / "new.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(bundle.spec.feature_names)
        w.writerows([[repr(v) for v in row] for row in raw.inputs[test].tolist()])
    assert torch.equal(pre.read(path).all(), bundle.test.inputs)


def test_text_round_trip_reads_the_training_inputs(tmp_path: Path) -> None:
    path = _texts(tmp_path / "reviews.csv")
    bundle = load_dataset(f"csv:{path}", text="review", target="label", max_length=8)
    run = tmp_path / "run"
    pre = _saved(bundle, run)
    assert (run / "tokenizer.json").is_file() and json.loads((run / PREPROCESSING_FILE).read_text())["tokenizer"] == "tokenizer.json"
    assert isinstance(pre, TextPreprocessor) and (pre.text_column, pre.length) == ("review", 8)
    inputs = pre.read(path)
    test = split_indices(torch.tensor([i % 2 for i in range(60)]), seed=0, val_fraction=0.1, test_fraction=0.2).test
    assert torch.equal(inputs.all()[test], bundle.test.inputs)
    assert inputs.texts[int(test[0])] == bundle.texts["test"][0]
    enc = inputs.encoded(0, 4)
    assert inputs.encoded(0, 4) is enc and torch.equal(inputs.batch(0, 4), enc.ids)  # one tokenisation per batch


def test_run_folders_without_preprocessing_json(tmp_path: Path) -> None:
    images = load_dataset("builtin:digits")
    assert load_preprocessing(tmp_path, images.spec) == ImagePreprocessor.from_spec(images.spec) == images.preprocessing
    with pytest.raises(DataError, match="needs the training preprocessing"):
        load_preprocessing(tmp_path, load_dataset("builtin:wine").spec)
    texts = load_dataset(f"csv:{_texts(tmp_path / 'r.csv')}", text="review", target="label")
    with pytest.raises(DataError, match="tokenizer.json' not found"):
        load_preprocessing(tmp_path, texts.spec, text_column="review")
    texts.tokenizer.save(tmp_path / "tokenizer.json")
    old = load_preprocessing(tmp_path, texts.spec, text_column="review")
    assert torch.equal(old.read(tmp_path / "r.csv").all(), texts.preprocessing.read(tmp_path / "r.csv").all())
    with pytest.raises(DataError, match=r"preprocessing\.json' not found"):
        load_preprocessing(tmp_path / "empty")


def test_damaged_or_foreign_preprocessing_is_a_one_line_error(tmp_path: Path) -> None:
    spec = load_dataset("builtin:digits").spec
    (tmp_path / PREPROCESSING_FILE).write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_preprocessing(tmp_path, spec)
    (tmp_path / PREPROCESSING_FILE).write_text('{"format": "someone-else/3"}')
    with pytest.raises(DataError, match="not a distilens preprocessing description"):
        load_preprocessing(tmp_path, spec)
    (tmp_path / PREPROCESSING_FILE).write_text('{"format": "distilens-image-preprocessing/1", "channels": 1}')
    with pytest.raises(DataError, match="incomplete or damaged"):
        load_preprocessing(tmp_path, spec)
    load_dataset("builtin:wine").preprocessing.save(tmp_path)
    with pytest.raises(DataError, match="describes table inputs but the model takes image inputs"):
        load_preprocessing(tmp_path, spec)
    (tmp_path / PREPROCESSING_FILE).write_text(json.dumps(
        {"format": "distilens-text-preprocessing/1", "text_column": "t", "length": 4, "tokenizer": "../elsewhere.json"}
    ))
    with pytest.raises(DataError, match="beside preprocessing.json"):
        load_preprocessing(tmp_path)


def test_read_refuses_inputs_of_another_kind(tmp_path: Path) -> None:
    table = load_dataset("builtin:wine").preprocessing
    image = load_dataset("builtin:digits").preprocessing
    texts = load_dataset(f"csv:{_texts(tmp_path / 'r.csv')}", text="review", target="label").preprocessing
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="prediction input .* does not exist; give a CSV file"):
        table.read(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="trained on a table; give a CSV file"):
        table.read(tmp_path / "a.png")
    with pytest.raises(DataError, match="trained on text; give a .csv, .tsv or .jsonl file, not the folder"):
        texts.read(tmp_path)
    with pytest.raises(DataError, match="trained on images; .* is not an image file or folder"):
        image.read(tmp_path / "r.csv")
    with pytest.raises(DataError, match=r"a\.png' is not a readable image"):
        image.read(tmp_path / "a.png").all()


def test_image_errors_include_decompression_bombs() -> None:
    assert Image.DecompressionBombError in IMAGE_ERRORS and OSError in IMAGE_ERRORS
