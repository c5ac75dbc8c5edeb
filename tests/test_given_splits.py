"""Given splits (issue 16 B1): a built-in's official test split, a table's split column or test file, image folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distilens.config import DataConfig
from distilens.data import load_data, load_dataset
from distilens.errors import ConfigError, DataError
from test_fashion_mnist import make_copy


def test_fashion_mnist_carves_validation_from_the_training_part(tmp_path: Path) -> None:
    make_copy(tmp_path / "fm", n_train=200, n_test=40)
    bundle = load_data(DataConfig(source="builtin:fashion_mnist", root=str(tmp_path / "fm"), val_fraction=0.1), seed=0)
    # 10% of the 200 training images (the 60k's 6k), the 40 official test images untouched
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (180, 20, 40)
    assert bundle.split_record() == {"split": {"test": "official", "val": "carved", "seed": 0, "val_fraction": 0.1}}
    line = bundle.describe_split()
    assert "official test split (40)" in line and "10% of the training part (20)" in line and "train: 180" in line


def test_data_root_only_for_builtins_read_from_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root: builtin:digits is not read from files"):
        load_data(DataConfig(source="builtin:digits", root=str(tmp_path)), seed=0)


def test_seeded_split_is_recorded() -> None:
    bundle = load_dataset("builtin:digits", seed=3)
    assert bundle.split_record()["split"] == {"test": "seeded", "val": "seeded", "seed": 3, "val_fraction": 0.1,
                                              "test_fraction": 0.2}


def _table(path: Path, n: int, split: list[str] | None = None) -> Path:
    head = "x,y,label" + (",part" if split else "")
    rows = [f"{i},{(i * 7) % 5},{'ab'[i % 2]}" + (f",{split[i]}" if split else "") for i in range(n)]
    path.write_text("\n".join([head, *rows]) + "\n")
    return path


def test_split_column_uses_the_marked_rows(tmp_path: Path) -> None:
    marks = ["train"] * 30 + ["val"] * 6 + ["TEST "] * 4
    csv = _table(tmp_path / "t.csv", 40, marks)
    b = load_data(DataConfig(source=f"csv:{csv}", target="label", split_column="part"), seed=0)
    assert (len(b.train), len(b.val), len(b.test)) == (30, 6, 4)
    assert b.spec.feature_names is not None and "part" not in " ".join(b.spec.feature_names)
    assert b.split_record()["split"] == {"test": "column", "val": "given", "seed": 0, "column": "part"}


def test_split_column_without_val_rows_carves_it_from_train(tmp_path: Path) -> None:
    csv = _table(tmp_path / "t.csv", 40, ["train"] * 30 + ["test"] * 10)
    b = load_data(DataConfig(source=f"csv:{csv}", target="label", split_column="part", val_fraction=0.2), seed=0)
    assert (len(b.train), len(b.val), len(b.test)) == (24, 6, 10)
    assert b.split_info.val == "carved"


def test_split_column_with_a_bad_value_names_the_rows(tmp_path: Path) -> None:
    csv = _table(tmp_path / "t.csv", 10, ["train"] * 7 + ["dev"] + ["test"] * 2)
    with pytest.raises(DataError, match=r"column 'part' \(data.split_column\) must say train, val or test, but rows 9 say 'dev'"):
        load_data(DataConfig(source=f"csv:{csv}", target="label", split_column="part"), seed=0)


def test_test_source_file(tmp_path: Path) -> None:
    train, test = _table(tmp_path / "train.csv", 40), _table(tmp_path / "test.csv", 8)
    b = load_data(DataConfig(source=f"csv:{train}", target="label", test_source=f"csv:{test}", val_fraction=0.25), seed=0)
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, 8)
    assert b.split_record()["split"]["test"] == "file"
    assert torch.equal(b.test.targets, torch.tensor([0, 1] * 4))


def test_split_keys_are_for_csv_only() -> None:
    with pytest.raises(ValueError, match="data.split_column applies to csv sources"):
        DataConfig(source="builtin:digits", split_column="part")
    with pytest.raises(ValueError, match="must be csv:PATH"):
        DataConfig(source="csv:a.csv", test_source="b.csv")
