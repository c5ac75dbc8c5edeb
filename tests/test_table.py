"""CSV tables: typing, imputation, one-hot, standardisation on train, round trip, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from distilens.data import load_dataset
from distilens.data.table import TablePreprocessor, load_csv
from distilens.errors import DataError


def _write(path: Path, rows: list[list[object]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def _table(path: Path, n: int = 40) -> Path:
    rows: list[list[object]] = [["age", "city", "income", "label"]]
    cities = ["Lyon", "Paris", "Köln"]
    for i in range(n):
        rows.append([20 + i % 30, cities[i % 3], 1000.5 * (i % 7), "yes" if i % 2 else "no"])
    return _write(path, rows)


def test_loads_with_one_hot_and_standardises_on_train(tmp_path: Path) -> None:
    p = _table(tmp_path / "people.csv")
    b = load_dataset(f"csv:{p}", target="label", seed=0)
    assert b.spec.kind == "table"
    assert b.spec.feature_names == ("age", "city=Köln", "city=Lyon", "city=Paris", "income")
    assert b.spec.class_names == ("no", "yes")
    assert b.spec.shape == (5,)
    assert torch.allclose(b.train.inputs.mean(0), torch.zeros(5), atol=1e-5)
    assert len(b.train) + len(b.val) + len(b.test) == 40
    assert isinstance(b.preprocessing, TablePreprocessor)


def test_preprocessing_round_trip_gives_identical_transforms(tmp_path: Path) -> None:
    p = _table(tmp_path / "people.csv")
    b = load_csv(p, target="label")
    d = json.loads(json.dumps(b.preprocessing.to_dict()))
    again = TablePreprocessor.from_dict(d)
    rows = [
        {"age": "33", "city": "Paris", "income": "12.5", "label": "ignored"},
        {"age": "", "city": "Berlin", "income": "NA"},  # missing -> imputed; unseen city -> zeros
    ]
    x1, x2 = b.preprocessing.transform(rows), again.transform(rows)
    assert torch.equal(x1, x2)
    raw = again.encode(rows)
    assert raw[1, 1:4].tolist() == [0.0, 0.0, 0.0]  # unknown category: all-zeros one-hot
    assert raw[1, 0].item() == again.columns[0].fill
    # the stored splits are exactly transform() of their rows
    all_rows = list(csv.DictReader(open(p, encoding="utf-8")))
    x_all = b.preprocessing.transform(all_rows)
    assert any(torch.allclose(x_all[i], b.test.inputs[0]) for i in range(len(all_rows)))


def test_missing_values_are_imputed_and_reported(tmp_path: Path) -> None:
    rows = [["a", "c", "y"]] + [[str(i), "u" if i % 3 else "v", str(i % 2)] for i in range(30)]
    rows[3][0] = ""
    rows[5][0] = "NA"
    rows[7][1] = "?"
    p = _write(tmp_path / "m.csv", rows)
    with pytest.warns(UserWarning, match=r"'a' \(2 rows.*'c' \(1 rows"):
        b = load_csv(p, target="y")
    assert not torch.isnan(b.train.inputs).any()


def test_semicolon_delimiter_numeric_classes_sorted(tmp_path: Path) -> None:
    rows = [["x", "klass"]] + [[str(i), str([2, 10, 1][i % 3])] for i in range(30)]
    b = load_csv(_write(tmp_path / "s.csv", rows, delimiter=";"), target="klass")
    assert b.spec.class_names == ("1", "2", "10")


def test_forced_categorical(tmp_path: Path) -> None:
    rows = [["zip", "y"]] + [[str(69000 + i % 3), str(i % 2)] for i in range(30)]
    b = load_csv(_write(tmp_path / "z.csv", rows), target="y", categorical=["zip"])
    assert b.spec.feature_names == ("zip=69000", "zip=69001", "zip=69002")


def test_wine_builtin() -> None:
    b = load_dataset("builtin:wine")
    assert b.spec.kind == "table" and b.spec.shape == (13,) and b.spec.num_classes == 3


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda r: r, r"column 'nope' not found in t\.csv; columns are: a, b, y"),
        (lambda r: [r[0]] + [[a, b, "same"] for a, b, _ in r[1:]], r"target column 'y' has one class"),
        (lambda r: r[:5] + [["1", "2"]] + r[6:], r"row 6 has 2 values, the header has 3"),
        (lambda r: r[:4] + [["oops", "1", "0"]] + r[5:], r"column 'a' holds numbers but not in rows 5 \('oops'\)"),
        (lambda r: r[:7] + [["inf", "1", "0"], ["NaN", "1", "1"]] + r[9:], r"column 'a' has NaN or infinite values in rows 8, 9"),
        (lambda r: r[:3] + [["1", "1", ""]] + r[4:], r"target column 'y' is empty in rows 4"),
        (lambda r: [r[0]], r"header but no data rows"),
        (lambda r: [], r"is empty"),
    ],
)
def test_errors_name_column_and_rows(tmp_path: Path, edit, pattern: str) -> None:  # type: ignore[no-untyped-def]
    rows = [["a", "b", "y"]] + [[str(i), str(i * 2), str(i % 2)] for i in range(30)]
    p = _write(tmp_path / "t.csv", edit(rows))
    target = "nope" if "nope" in pattern else "y"
    with pytest.raises(DataError, match=pattern) as err:
        load_csv(p, target=target)
    assert "\n" not in str(err.value)


def test_mostly_text_column_is_categorical(tmp_path: Path) -> None:
    rows = [["code", "y"]] + [[("A" if i % 2 else str(i)), str(i % 2)] for i in range(30)]
    b = load_csv(_write(tmp_path / "c.csv", rows), target="y")
    assert b.spec.feature_names is not None and "code=A" in b.spec.feature_names


def test_identifier_like_column_is_refused(tmp_path: Path) -> None:
    rows = [["name", "y"]] + [[f"id-{i}", str(i % 2)] for i in range(30)]
    with pytest.raises(DataError, match=r"column 'name' has \d+ distinct values.*identifier"):
        load_csv(_write(tmp_path / "i.csv", rows), target="y", max_categories=10)


def test_transform_errors_name_row(tmp_path: Path) -> None:
    b = load_csv(_table(tmp_path / "people.csv"), target="label")
    with pytest.raises(DataError, match=r"row 7: column 'age' is 'old'"):
        b.preprocessing.transform([{"age": "old", "city": "Lyon", "income": "1"}], row_numbers=[7])
    with pytest.raises(DataError, match=r"lack column 'income'"):
        b.preprocessing.transform([{"age": "1", "city": "Lyon"}])


def test_target_required(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.target.*columns are: age, city, income, label"):
        load_dataset(f"csv:{_table(tmp_path / 'people.csv')}")
