"""Text tables: one text column and one label column in a .csv, .tsv or .jsonl file.

Rules (documented for users in README, "Text"):

* ``data.source: csv:PATH`` with ``data.text: COLUMN`` set is a text data set; the file's
  extension picks the format: ``.jsonl`` (one JSON object per line), ``.tsv`` (tab
  separated), anything else CSV (``,``, or ``;``/tab when the header holds more of those).
* Files are read as strict UTF-8 (a BOM is allowed); an undecodable byte is an error naming
  its line. Row numbers in messages are file lines (CSV: the header is line 1).
* Every row needs a non-blank text and a label; the classes are the distinct labels, sorted
  (numerically when all are numbers).
* The split is the seeded, stratified one of every other data set
  (:func:`distilens.data.split.split_indices`), or given: by a split column (``train``,
  ``val``, ``test`` per row) or a separate test file (:func:`distilens.data.split.split_rows`);
  a word-level vocabulary is fitted on the training split only, then all rows are tokenised
  to ``L = min(max_length, longest row)`` ids.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

import torch

from ..errors import ConfigError, DataError
from ..limits import loads_json
from ..registry import did_you_mean
from .bundle import DataBundle, InputSpec, Split, TeacherView
from .preprocessing import PREPROCESSING_FILE, PredictionInputs, SavedAsJson, check_format, existing_input
from .rows import format_rows, sorted_class_names
from .split import split_rows
from .tokenize import Encoded, TextTokenizer

__all__ = ["read_text_table", "load_text", "text_spec", "TextPreprocessor", "TextInputs", "TOKENIZER_FILE"]

#: The models' tokenizer in a run folder.
TOKENIZER_FILE = "tokenizer.json"
_FORMAT = "distilens-text-preprocessing/1"


def _decode(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"text file '{path}' does not exist; check data.source")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"'{path}' line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], list[dict[str, str]], list[int]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1  # a quoted text may span lines
            if not row or all(not c.strip() for c in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                raise DataError(
                    f"'{path}' line {line} has {len(row)} values, the header has {len(header)}; "
                    "quote texts that contain the delimiter"
                )
            rows.append(dict(zip(header, row)))
            numbers.append(line)
    except csv.Error as exc:
        raise DataError(f"'{path}' line {reader.line_num}: {exc}; fix the quoting") from None
    if header is None:
        raise DataError(f"'{path}' is empty; it needs a header row and data rows")
    return header, rows, numbers


def _read_jsonl(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    header: list[str] = []
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = loads_json(line, f"'{path}' line {number}")  # nesting bounded (limits.py)
        except json.JSONDecodeError as exc:
            raise DataError(f"'{path}' line {number} is not valid JSON ({exc.msg}); fix the line") from None
        if not isinstance(obj, dict):
            raise DataError(f"'{path}' line {number} is a JSON {type(obj).__name__}, not an object of fields")
        header += [k for k in obj if k not in header]
        rows.append(obj)
        numbers.append(number)
    return header, rows, numbers


def read_text_table(path: str | Path) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """Read a .csv/.tsv/.jsonl file into ``(columns, rows, line_numbers)``.

    Rows are dicts column → value (strings for CSV/TSV, JSON values for JSONL).

    Raises:
        DataError: missing file, bytes that are not UTF-8, bad JSON, ragged rows, no rows.
    """
    path = Path(path)
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        header, rows, numbers = _read_jsonl(path, text)
    else:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if suffix == ".tsv" else max([",", ";", "\t"], key=first.count) if first else ","
        header, rows, numbers = _read_delimited(path, text, delimiter)
    if not rows:
        raise DataError(f"'{path}' has no data rows")
    return header, rows, numbers


def _column(path: Path, header: list[str], name: str | None, key: str) -> str:
    if not name:
        raise DataError(f"{key}: a text source needs this column; columns of {path.name} are: {', '.join(header)}")
    if name not in header:
        raise DataError(
            f"{key}: column '{name}' not found in {path.name}{did_you_mean(name, header)}; "
            f"columns are: {', '.join(header)}"
        )
    return name


def _cell(value: Any) -> str | None:
    """A cell as text; ``None`` when missing (absent, JSON null, or blank)."""
    if value is None:
        return None
    s = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (bool, list, dict)) else str(value)
    return s if s.strip() else None


def _texts_and_labels(
    path: Path, rows: list[dict[str, Any]], numbers: list[int], text_col: str, target_col: str
) -> tuple[list[str | None], list[str | None]]:
    """The text and label cells of ``rows``; an empty one is a DataError naming the file's lines."""
    texts = [_cell(r.get(text_col)) for r in rows]
    blank = [n for t, n in zip(texts, numbers) if t is None]
    if blank:
        raise DataError(f"'{path}': text column '{text_col}' is empty in line(s) {format_rows(blank)}; fill them in or remove those rows")
    labels = [_cell(r.get(target_col)) for r in rows]
    missing = [n for v, n in zip(labels, numbers) if v is None]
    if missing:
        raise DataError(f"'{path}': target column '{target_col}' is empty in line(s) {format_rows(missing)}; fill them in or remove those rows")
    return texts, labels


def text_spec(tokenizer: TextTokenizer, length: int, class_names: Sequence[str]) -> InputSpec:
    """The :class:`InputSpec` of ids (L,) made by ``tokenizer``."""
    return InputSpec(
        "text", (int(length),), tuple(class_names), vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id
    )


def load_text(
    path: str | Path,
    *,
    text: str | None,
    target: str | None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_length: int = 128,
    tokenizer: Literal["word", "teacher"] | None = None,
    max_vocab: int = 20000,
    min_freq: int = 1,
    teacher_tokenizer: TextTokenizer | None = None,
    split_column: str | None = None,
    test_source: str | Path | None = None,
) -> DataBundle:
    """Load a text table into token-id splits (N, L) with the raw texts kept on the bundle.

    Args:
        path: A .csv, .tsv or .jsonl file.
        text: The text column.
        target: The label column.
        seed: Seeds the stratified split.
        val_fraction: Fraction of rows for validation.
        test_fraction: Fraction of rows for testing.
        max_length: Most tokens per text (longer texts are truncated).
        tokenizer: ``"word"`` (a vocabulary fitted on the training texts) or ``"teacher"``
            (``teacher_tokenizer`` for every model); ``None``: teacher when one is given.
        max_vocab: Word-level vocabulary size, special tokens included.
        min_freq: Smallest training count a word needs for its own id.
        teacher_tokenizer: The teacher's own tokenizer, where it brings one.
        split_column: The column that says each row's split (train, val or test); given a
            test split, validation (unless marked) is ``val_fraction`` of the training rows.
        test_source: A file of test rows (same format and columns) (``data.test_source``).

    Returns:
        A :class:`DataBundle` of kind ``"text"``: ``inputs`` are int64 ids, ``texts`` the raw
        texts per split, ``tokenizer`` the models' tokenizer. When the teacher tokenises
        differently, ``teacher_view`` (:class:`~distilens.data.bundle.TeacherView`) holds
        its ids for the same rows in the same order, its spec and its tokenizer.

    Example:
        >>> bundle = load_text("reviews.csv", text="review", target="label")
        >>> bundle.train.inputs.dtype, bundle.texts["train"][0]
        (torch.int64, 'A gripping, well-acted film.')
    """
    path = Path(path)
    header, rows, numbers = read_text_table(path)
    text_col = _column(path, header, text, "data.text")
    target_col = _column(path, header, target, "data.target")
    if text_col == target_col:
        raise DataError(f"data.text and data.target are both '{text_col}'; the label needs its own column")
    split_col = _column(path, header, split_column, "data.split_column") if split_column is not None else None
    texts, labels = _texts_and_labels(path, rows, numbers, text_col, target_col)
    n_main = len(rows)
    if test_source is not None:
        test_path = Path(test_source)
        test_header, test_rows, test_numbers = read_text_table(test_path)
        for col, key in ((text_col, "data.text"), (target_col, "data.target")):
            _column(test_path, test_header, col, f"data.test_source: {key}")
        test_texts, test_labels = _texts_and_labels(test_path, test_rows, test_numbers, text_col, target_col)
        rows, numbers = rows + test_rows, numbers + test_numbers
        texts, labels = texts + test_texts, labels + test_labels
    labels = [v.strip() for v in labels]  # type: ignore[union-attr]
    class_names = sorted_class_names(labels[:n_main])
    if len(class_names) < 2:
        raise DataError(f"'{path}': target column '{target_col}' has one class ('{class_names[0]}'); a classifier needs two or more")
    strange = [(v, n) for v, n in zip(labels[n_main:], numbers[n_main:]) if v not in class_names]
    if strange:
        raise DataError(f"'{test_source}' line {strange[0][1]}: label '{strange[0][0]}' is a class the training file does not "
                        f"have; the classes are: {', '.join(class_names)}")
    y = torch.tensor([class_names.index(v) for v in labels], dtype=torch.int64)

    # Split first: the vocabulary is fitted on the training texts only.
    parts, info = split_rows(
        y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, name=path.name,
        split_values=[str(_cell(r.get(split_col)) or "") for r in rows] if split_col is not None else None,
        column=split_col, row_numbers=numbers, class_names=class_names,
        test_rows=torch.arange(len(y)) >= n_main if test_source is not None else None,
        test_file=str(test_source) if test_source is not None else None,
    )
    index = dict(parts.items())
    all_texts: list[str] = texts  # type: ignore[assignment]

    choice = tokenizer or ("teacher" if teacher_tokenizer is not None else "word")
    if choice == "teacher":
        if teacher_tokenizer is None:
            raise ConfigError(
                "data.tokenizer: 'teacher' needs a teacher that brings its own tokenizer (teacher.weights: hf:PATH); "
                "use data.tokenizer: word"
            )
        tok = teacher_tokenizer
    else:
        tok = TextTokenizer.word_level([all_texts[i] for i in index["train"].tolist()], max_vocab=max_vocab, min_freq=min_freq)
    ids = tok.encode(all_texts, max_length).ids  # (N, L): one L for every split
    splits = {s: Split(ids[i].contiguous(), y[i].contiguous()) for s, i in index.items()}
    bundle = DataBundle(
        path.stem, splits["train"], splits["val"], splits["test"], text_spec(tok, ids.shape[1], class_names),
        preprocessing=TextPreprocessor(tok, text_col, int(ids.shape[1])),
        texts={s: [all_texts[j] for j in i.tolist()] for s, i in index.items()}, tokenizer=tok, split_info=info,
    )
    if teacher_tokenizer is not None and tok is not teacher_tokenizer:
        t_ids = teacher_tokenizer.encode(all_texts, max_length).ids
        bundle.teacher_view = TeacherView(
            {s: t_ids[i].contiguous() for s, i in index.items()}, text_spec(teacher_tokenizer, t_ids.shape[1], class_names),
            teacher_tokenizer,
        )
    return bundle


class TextInputs(PredictionInputs):
    """Texts read for prediction: names, the texts, and their token ids batch by batch.

    :meth:`encoded` keeps the last batch's encoding, so the ids a model reads and the
    character offsets that map its token scores back to words come from one tokenisation.
    """

    def __init__(self, names: Sequence[str], texts: Sequence[str], preprocessor: "TextPreprocessor") -> None:
        super().__init__(names, lambda start, stop: self.encoded(start, stop).ids)
        self.texts = list(texts)
        self._preprocessor = preprocessor
        self._last: tuple[int, int, Encoded] | None = None

    def encoded(self, start: int, stop: int) -> Encoded:
        """Ids (stop − start, L) and character offsets of texts ``start`` to ``stop``."""
        stop = min(stop, len(self.texts))
        if self._last is None or self._last[:2] != (start, stop):
            self._last = (start, stop, self._preprocessor.encode(self.texts[start:stop]))
        return self._last[2]


@dataclass(frozen=True)
class TextPreprocessor(SavedAsJson):
    """How new texts become model inputs at prediction time: column, tokenizer, length.

    ``preprocessing.json`` names the column, the length and the tokenizer file
    (:data:`TOKENIZER_FILE`, saved beside it).

    Attributes:
        tokenizer: The tokenizer the model was trained with (the run's tokenizer.json).
        text_column: The text column of input files (``data.text``).
        length: The model's L (``min(data.max_length, longest text of the data)``); texts are
            cut or padded to exactly this many ids.

    Example:
        >>> pre = TextPreprocessor.load("runs/reviews")
        >>> inputs = pre.read("new.csv")
        >>> inputs.names[0], inputs.batch(0, 8).shape
        ('new.csv:line 2', torch.Size([8, 64]))
    """

    tokenizer: TextTokenizer
    text_column: str
    length: int

    kind: ClassVar[str] = "text"

    def read(self, path: str | Path) -> TextInputs:
        """The texts of a .csv/.tsv/.jsonl file as model inputs; names are ``file:line N``."""
        path = existing_input(path, "a .csv, .tsv or .jsonl file")
        if path.is_dir():
            raise DataError(f"the model was trained on text; give a .csv, .tsv or .jsonl file, not the folder '{path}'")
        names, texts = self.read_texts(path)
        return TextInputs(names, texts, self)

    def read_texts(self, path: str | Path) -> tuple[list[str], list[str]]:
        """``(names, texts)`` of a .csv/.tsv/.jsonl file; names are ``file:line N``."""
        path = Path(path)
        header, rows, numbers = read_text_table(path)
        col = _column(path, header, self.text_column, "text column")
        texts = [_cell(r.get(col)) for r in rows]
        blank = [n for t, n in zip(texts, numbers) if t is None]
        if blank:
            raise DataError(f"'{path}': text column '{col}' is empty in line(s) {format_rows(blank)}; fill them in or remove those rows")
        return [f"{path.name}:line {n}" for n in numbers], texts  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> Encoded:
        """The texts' ids, (N, length) int64, and each token's character offsets."""
        return self.tokenizer.encode(texts, self.length, pad_to_max=True)

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, length) int64 ids."""
        return self.encode(texts).ids

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description; the tokenizer itself is the file it names."""
        return {"format": _FORMAT, "text_column": self.text_column, "length": self.length, "tokenizer": TOKENIZER_FILE}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], folder: str | Path | None = None) -> "TextPreprocessor":
        """The inverse of :meth:`to_dict`; the tokenizer file is read from ``folder``."""
        check_format(d, _FORMAT, "text")
        name = str(d["tokenizer"])
        if folder is None or Path(name).name != name:  # a bare file name beside preprocessing.json, nothing else
            raise DataError(f"the text preprocessing needs its tokenizer file '{name}' beside {PREPROCESSING_FILE}")
        return cls(TextTokenizer.from_file(Path(folder) / name), str(d["text_column"]), int(d["length"]))

    @classmethod
    def from_spec(cls, spec: InputSpec, folder: str | Path | None = None, *, text_column: str | None = None) -> "TextPreprocessor":
        """The run folder's tokenizer.json on ``text_column``, cut to the spec's length (runs from
        before ``preprocessing.json`` was written for text)."""
        if folder is None or not text_column:
            raise DataError("predicting on text needs the training tokenizer (tokenizer.json in the run folder)")
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise DataError(f"'{path}' not found; the run folder of a text model holds the tokenizer it was trained with")
        return cls(TextTokenizer.from_file(path), text_column, int(spec.shape[0]))

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/preprocessing.json`` and the tokenizer it names, atomically; the JSON's path."""
        self.tokenizer.save(Path(folder) / TOKENIZER_FILE)
        return super().save(folder)
