"""CSV tables: typed columns, imputation, one-hot encoding and standardisation fitted on train.

Rules (documented for users in the config reference):

* The delimiter is the one of ``,`` ``;`` or tab that the header line holds most (``,``
  when none); the file is UTF-8 (a BOM is allowed). Row numbers in messages are as in the
  file: 1-based, the header is row 1.
* A cell is *missing* when empty or one of ``NA``, ``N/A``, ``null``, ``?`` (any case).
  ``nan``/``inf`` literals are not missing values: in a numeric column they are an error.
* A column is *numeric* when every non-missing value parses as a number. When at least 90%
  do but a few do not, the column is taken to be numeric with typos, and loading fails
  naming those rows; below 90% the column is *categorical*.
* Missing numbers are imputed with the training split's median, missing categories with
  its most frequent value; a warning lists the columns and counts.
* Categorical columns are one-hot encoded over the categories seen in the training split,
  as features named ``column=value``; a category not seen there (in val/test rows or at
  prediction time) encodes as all zeros in that column's one-hot block.
* All features are then standardised with the training split's mean and std.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..limits import csv_reader
from .bundle import DataBundle, InputSpec, Split
from .image_io import IMAGE_EXTENSIONS
from .normalise import apply_normalisation, fit_normalisation
from .preprocessing import PredictionInputs, SavedAsJson, check_format, existing_input
from .rows import format_rows, parse_number, sorted_class_names
from .split import split_rows

__all__ = ["load_csv", "read_csv", "TablePreprocessor", "ColumnSpec", "NUMERIC_SHARE"]

MISSING = frozenset({"", "na", "n/a", "null", "?"})
NUMERIC_SHARE = 0.9  # share of parseable values above which a column is numeric (with typos)
_FORMAT = "distilens-table-preprocessing/1"


def _is_missing(v: str) -> bool:
    return v.strip().lower() in MISSING


def read_csv(path: str | Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Read a CSV file into ``(header, rows, row_numbers)``; blank lines are skipped.

    Raises:
        DataError: missing or empty file, duplicate column names, ragged rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file '{path}' does not exist; check data.source")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"'{path}' is not UTF-8 text ({exc}); save it as UTF-8") from None
    first = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t"], key=first.count) if first else ","
    reader = csv_reader(text.splitlines(keepends=True), f"'{path}'", delimiter=delimiter)  # cells bounded (limits.py)
    header: list[str] | None = None
    rows: list[list[str]] = []
    numbers: list[int] = []
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip() for c in row]
            dupes = [c for c, n in Counter(header).items() if n > 1]
            if dupes:
                raise DataError(f"'{path}': column '{dupes[0]}' appears more than once in the header; rename one")
            continue
        if len(row) != len(header):
            raise DataError(
                f"'{path}' row {reader.line_num} has {len(row)} values, the header has {len(header)}; "
                "fix the row (quote values that contain the delimiter)"
            )
        rows.append(row)
        numbers.append(reader.line_num)
    if header is None:
        raise DataError(f"CSV file '{path}' is empty; it needs a header row and data rows")
    if not rows:
        raise DataError(f"CSV file '{path}' has a header but no data rows; add one row per sample below the header")
    return header, rows, numbers


@dataclass
class ColumnSpec:
    """How one input column becomes features: a number, or a one-hot block over categories."""

    name: str
    kind: Literal["numeric", "categorical"]
    fill: float | str  # the imputed value (training median / most frequent category)
    categories: list[str] = field(default_factory=list)

    def feature_names(self) -> list[str]:
        return [self.name] if self.kind == "numeric" else [f"{self.name}={c}" for c in self.categories]


def _column_kind(name: str, values: list[str], numbers: list[int], path: str) -> Literal["numeric", "categorical"]:
    present = [(v, r) for v, r in zip(values, numbers) if not _is_missing(v)]
    if not present:
        raise DataError(f"'{path}': column '{name}' has no values; remove it from the file")
    parsed = [(parse_number(v), v, r) for v, r in present]
    text = [(v, r) for x, v, r in parsed if x is None]
    if len(text) > (1.0 - NUMERIC_SHARE) * len(present):
        return "categorical"
    if text:
        examples = ", ".join(f"{r} ('{v}')" for v, r in text[:5])
        raise DataError(
            f"'{path}': column '{name}' holds numbers but not in rows {examples}"
            f"{' …' if len(text) > 5 else ''}; fix them or leave them empty to impute"
        )
    bad = [r for x, _, r in parsed if x is not None and not math.isfinite(x)]
    if bad:
        raise DataError(
            f"'{path}': column '{name}' has NaN or infinite values in rows {format_rows(bad)}; "
            "leave missing values empty (they are imputed) or fix them"
        )
    return "numeric"


@dataclass
class TablePreprocessor(SavedAsJson):
    """Fitted CSV preprocessing: imputation, one-hot encoding, standardisation.

    ``transform`` applies exactly what training applied, so prediction on new rows sees the
    same features; ``to_dict``/``from_dict`` round-trip through JSON.

    Attributes:
        columns: One :class:`ColumnSpec` per input column, in file order.
        target: The label column (ignored in ``transform`` input when present).
        class_names: Class labels, index = class.
        mean: (F,) feature means of the training split (after one-hot).
        std: (F,) feature stds of the training split (clamped away from 0).

    Example:
        >>> pre = TablePreprocessor.load("runs/loans")           # runs/loans/preprocessing.json
        >>> x = pre.transform([{"age": "41", "city": "Lyon"}])   # (1, F) float32
    """

    columns: list[ColumnSpec]
    target: str
    class_names: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    kind: ClassVar[str] = "table"

    @property
    def feature_names(self) -> list[str]:
        return [f for c in self.columns for f in c.feature_names()]

    def encode(self, rows: Iterable[Mapping[str, str]], row_numbers: Sequence[int] | None = None) -> Tensor:
        """Impute and one-hot encode ``rows`` (dicts column → text); (N, F) float32, not standardised."""
        rows = list(rows)
        numbers = list(row_numbers) if row_numbers is not None else list(range(1, len(rows) + 1))
        out = np.zeros((len(rows), len(self.feature_names)), dtype=np.float32)
        start = 0
        for col in self.columns:
            width = 1 if col.kind == "numeric" else len(col.categories)
            index = {c: i for i, c in enumerate(col.categories)}
            for i, (row, number) in enumerate(zip(rows, numbers)):
                if col.name not in row:
                    raise DataError(f"input rows lack column '{col.name}'; the model was trained with columns: {', '.join(c.name for c in self.columns)}")
                v = str(row[col.name])
                if col.kind == "numeric":
                    x = float(col.fill) if _is_missing(v) else parse_number(v)
                    if x is None or not math.isfinite(x):
                        raise DataError(f"row {number}: column '{col.name}' is '{v}', not a finite number; fix it or leave it empty")
                    out[i, start] = x
                else:
                    v = str(col.fill) if _is_missing(v) else v
                    if v in index:  # unseen categories stay all-zeros
                        out[i, start + index[v]] = 1.0
            start += width
        return torch.from_numpy(out)

    def transform(self, rows: Iterable[Mapping[str, str]], row_numbers: Sequence[int] | None = None) -> Tensor:
        """Rows (dicts column → text) → (N, F) float32 model inputs, standardised like training.

        Args:
            rows: One mapping per row; extra keys (such as the target) are ignored.
            row_numbers: Numbers used in error messages (default 1, 2, …).
        """
        x = self.encode(rows, row_numbers)
        return apply_normalisation(x, torch.tensor(self.mean), torch.tensor(self.std), "table")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (plain lists, strings and finite floats)."""
        return {
            "format": _FORMAT,
            "target": self.target,
            "class_names": list(self.class_names),
            "columns": [
                {"name": c.name, "kind": c.kind, "fill": c.fill, "categories": list(c.categories)} for c in self.columns
            ],
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], folder: str | Path | None = None) -> "TablePreprocessor":
        """The inverse of :meth:`to_dict` (``folder`` is not needed)."""
        check_format(d, _FORMAT, "table")
        columns = [
            ColumnSpec(c["name"], c["kind"], float(c["fill"]) if c["kind"] == "numeric" else str(c["fill"]), list(c["categories"]))
            for c in d["columns"]
        ]
        return cls(columns, str(d["target"]), [str(c) for c in d["class_names"]], list(d["mean"]), list(d["std"]))

    @classmethod
    def from_spec(cls, spec: InputSpec, folder: str | Path | None = None, *, text_column: str | None = None) -> "TablePreprocessor":
        """Never enough: the imputation and one-hot columns are not in the spec (a DataError)."""
        raise DataError("predicting on a table needs the training preprocessing (preprocessing.json in the run folder)")

    def read(self, path: str | Path) -> PredictionInputs:
        """A CSV file's rows as model inputs, named ``file.csv:row N`` (file rows; the header is 1).

        Columns the model was not trained on (such as the target) are ignored; a missing
        column or a non-number in a numeric column is a DataError naming it.
        """
        path = existing_input(path, "a CSV file")
        if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
            raise DataError(f"the model was trained on a table; give a CSV file, not '{path}'")
        header, rows, numbers = read_csv(path)
        dict_rows = [dict(zip(header, r)) for r in rows]
        names = [f"{path.name}:row {n}" for n in numbers]
        return PredictionInputs(names, lambda start, stop: self.transform(dict_rows[start:stop], numbers[start:stop]))


def _fit_column(name: str, kind: str, values: list[str], train: np.ndarray) -> ColumnSpec:
    seen = [values[i] for i in train if not _is_missing(values[i])]
    if not seen:
        raise DataError(f"column '{name}' has no values in the training split; remove it or add data")
    if kind == "numeric":
        return ColumnSpec(name, "numeric", float(np.median([float(v) for v in seen])))
    counts = Counter(seen)
    top = max(counts.values())
    fill = min(v for v, n in counts.items() if n == top)  # ties: the first in sorted order
    return ColumnSpec(name, "categorical", fill, sorted(counts))


def load_csv(
    path: str | Path,
    *,
    target: str | None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    categorical: Sequence[str] = (),
    max_categories: int = 100,
    split_column: str | None = None,
    test_source: str | Path | None = None,
) -> DataBundle:
    """Load a CSV table into standardised in-memory train/val/test splits.

    The splits are seeded and stratified, or given: by ``split_column`` (each row says
    train, val or test) or by a separate ``test_source`` file with the same columns. Given a
    test split, validation (unless marked) is ``val_fraction`` of the training rows.

    Args:
        path: The CSV file (header row first).
        target: The label column; its distinct values are the classes.
        seed: Seeds the (stratified) split.
        val_fraction: Fraction of rows for validation (of the training rows when the test
            split is given).
        test_fraction: Fraction of rows for testing (seeded splits only).
        categorical: Columns to treat as categories even when numeric (e.g. zip codes).
        max_categories: More distinct values than this in a categorical column is an error
            (it is most likely an identifier).
        split_column: The column that says each row's split (``data.split_column``); it is
            not a feature.
        test_source: A CSV file of test rows with the same columns (``data.test_source``).

    Returns:
        A :class:`DataBundle` of kind ``"table"``; ``bundle.preprocessing`` is the fitted
        :class:`TablePreprocessor` (save ``to_dict()`` for prediction).

    Example:
        >>> bundle = load_csv("loans.csv", target="default")
        >>> bundle.spec.feature_names[:2]
        ('age', 'city=Lyon')
    """
    path = Path(path)
    header, rows, numbers = read_csv(path)
    if not target:
        raise DataError(f"data.target: a csv source needs the label column; columns are: {', '.join(header)}")
    if target not in header:
        raise DataError(f"data.target: column '{target}' not found in {path.name}; columns are: {', '.join(header)}")
    if split_column is not None and split_column not in header:
        raise DataError(f"data.split_column: column '{split_column}' not found in {path.name}; columns are: {', '.join(header)}")
    if split_column == target:
        raise DataError(f"data.split_column and data.target are both '{target}'; the split needs its own column")
    t = header.index(target)
    labels = [r[t].strip() for r in rows]
    empty = [n for v, n in zip(labels, numbers) if _is_missing(v)]
    if empty:
        raise DataError(f"'{path}': target column '{target}' is empty in rows {format_rows(empty)}; fill them in or remove those rows")
    class_names = sorted_class_names(labels)
    if len(class_names) < 2:
        raise DataError(f"'{path}': target column '{target}' has one class ('{class_names[0]}'); a classifier needs two or more")
    features = [c for c in header if c not in (target, split_column)]
    if not features:
        raise DataError(f"'{path}' has no columns besides the target '{target}'; add feature columns")
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise DataError(f"categorical column '{unknown[0]}' is not a feature column of {path.name}; columns are: {', '.join(features)}")
    test_rows: list[dict[str, str]] = []
    test_numbers: list[int] = []
    if test_source is not None:
        test_rows, test_numbers = _test_file(Path(test_source), [target, *features], target, class_names)
    y = torch.tensor([class_names.index(v) for v in labels + [r[target].strip() for r in test_rows]], dtype=torch.int64)

    # Split first, so that imputation, categories and statistics are fitted on training rows only.
    parts, info = split_rows(
        y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, name=path.name,
        split_values=[r[header.index(split_column)] for r in rows] if split_column is not None else None,
        column=split_column, row_numbers=numbers, class_names=class_names,
        test_rows=torch.arange(len(y)) >= len(rows) if test_source is not None else None,
        test_file=str(test_source) if test_source is not None else None,
    )
    index = {s: i.numpy() for s, i in parts.items()}

    specs: list[ColumnSpec] = []
    missing: list[str] = []
    for name in features:
        j = header.index(name)
        values = [r[j] for r in rows]  # the main file's rows decide the kind; a test file is encoded with it
        kind = "categorical" if name in categorical else _column_kind(name, values, numbers, str(path))
        spec = _fit_column(name, kind, values, index["train"])
        if kind == "categorical" and len(spec.categories) > max_categories:
            raise DataError(
                f"'{path}': column '{name}' has {len(spec.categories)} distinct values (more than {max_categories}); "
                "it looks like an identifier: remove it from the file"
            )
        specs.append(spec)
        n_missing = sum(_is_missing(v) for v in values)
        if n_missing:
            missing.append(f"'{name}' ({n_missing} rows, filled with {spec.fill!r})")
    if missing:
        warnings.warn(f"{path.name}: imputed missing values in column(s) {', '.join(missing)}", stacklevel=3)

    pre = TablePreprocessor(specs, target, class_names)
    dict_rows = [dict(zip(header, r)) for r in rows]
    raw = pre.encode(dict_rows, numbers)  # (N, F) before standardisation
    if test_rows:
        try:
            raw = torch.cat([raw, pre.encode(test_rows, test_numbers)])
        except DataError as exc:  # name the test file, whose row the message gives
            raise DataError(f"'{test_source}': {exc}") from None
    mean, std = fit_normalisation(raw[torch.from_numpy(index["train"])], "table")
    pre.mean, pre.std = mean.tolist(), std.tolist()
    x = apply_normalisation(raw, mean, std, "table")
    splits = {s: Split(x[torch.from_numpy(i)].contiguous(), y[torch.from_numpy(i)].contiguous()) for s, i in index.items()}
    spec = InputSpec(
        "table", (x.shape[1],), tuple(class_names), tuple(pre.feature_names), tuple(pre.mean), tuple(pre.std)
    )
    return DataBundle(path.stem, splits["train"], splits["val"], splits["test"], spec, preprocessing=pre, split_info=info)


def _test_file(
    path: Path, columns: Sequence[str], target: str, class_names: Sequence[str]
) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of ``data.test_source`` (dicts column → text) and their row numbers, checked.

    Raises:
        DataError: a column of the training file is missing, a label is empty or is a class
            the training file does not have.
    """
    header, rows, numbers = read_csv(path)
    lacking = [c for c in columns if c not in header]
    if lacking:
        raise DataError(f"data.test_source '{path}' lacks column '{lacking[0]}' of the training file; "
                        f"its columns are: {', '.join(header)}")
    dict_rows = [dict(zip(header, r)) for r in rows]
    for row, number in zip(dict_rows, numbers):
        label = row[target].strip()
        if _is_missing(label) or label not in class_names:
            what = "is empty" if _is_missing(label) else f"is '{label}', a class the training file does not have"
            raise DataError(f"'{path}' row {number}: target column '{target}' {what}; the classes are: {', '.join(class_names)}")
    return dict_rows, numbers
