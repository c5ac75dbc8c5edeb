"""Predict with a trained model on new files: an image, a folder of images, or a CSV table.

Images go through exactly the training preprocessing (:func:`~distilens.data.imagefolder.read_image`
with the channels and size of ``spec.shape``, then ``spec.mean``/``spec.std``); CSV rows go
through the fitted :class:`~distilens.data.table.TablePreprocessor`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .data.bundle import InputSpec
from .data.imagefolder import IMAGE_EXTENSIONS, list_images, read_image
from .data.normalise import apply_normalisation
from .data.table import TablePreprocessor, read_csv
from .data.text import TextPreprocessor
from .data.tokenize import Encoded
from .errors import DataError
from .io import atomic_write_text

__all__ = ["predict", "write_predictions"]

_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def _image_inputs(spec: InputSpec, files: list[Path]) -> Tensor:
    c, h, w = spec.shape
    arrays = []
    for p in files:
        try:
            arrays.append(read_image(p, c, (h, w)))
        except _PIL_ERRORS as exc:
            raise DataError(f"'{p}' is not a readable image ({exc}); remove it from the input") from None
    x = torch.from_numpy(np.stack(arrays))
    return apply_normalisation(x, torch.tensor(spec.mean), torch.tensor(spec.std), "image")


def _sources(
    spec: InputSpec, preprocessing: TablePreprocessor | TextPreprocessor | None, input_path: Path
) -> tuple[list[str], Any]:
    """Names of the inputs and a loader ``load(i, j) -> (j - i, *spec.shape)`` model inputs."""
    if not input_path.exists():
        raise DataError(f"prediction input '{input_path}' does not exist; give an image, a folder of images or a CSV file")
    if spec.kind == "text":
        if not isinstance(preprocessing, TextPreprocessor):
            raise DataError("predicting on text needs the training tokenizer (tokenizer.json in the run folder)")
        if input_path.is_dir():
            raise DataError(f"the model was trained on text; give a .csv, .tsv or .jsonl file, not the folder '{input_path}'")
        names, texts = preprocessing.read(input_path)
        return names, _TextLoader(preprocessing, texts)
    if spec.kind == "table":
        if preprocessing is None:
            raise DataError("predicting on a table needs the training preprocessing (preprocessing.json in the run folder)")
        if input_path.is_dir() or input_path.suffix.lower() in IMAGE_EXTENSIONS:
            raise DataError(f"the model was trained on a table; give a CSV file, not '{input_path}'")
        header, rows, numbers = read_csv(input_path)
        dict_rows = [dict(zip(header, r)) for r in rows]
        names = [f"{input_path.name}:row {n}" for n in numbers]
        return names, lambda i, j: preprocessing.transform(dict_rows[i:j], numbers[i:j])
    if input_path.is_dir():
        files = list_images(input_path)
        if not files:
            raise DataError(f"folder '{input_path}' holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        names = [p.relative_to(input_path).as_posix() for p in files]
    elif input_path.suffix.lower() in IMAGE_EXTENSIONS:
        files, names = [input_path], [input_path.name]
    else:
        raise DataError(f"the model was trained on images; '{input_path}' is not an image file or folder")
    return names, lambda i, j: _image_inputs(spec, files[i:j])


class _TextLoader:
    """``load(i, j)`` → (j − i, L) token ids of texts i..j; the last batch's encoding (offsets) is kept for word attributions."""

    def __init__(self, preprocessing: TextPreprocessor, texts: list[str]) -> None:
        self.preprocessing, self.texts = preprocessing, texts
        self.last: tuple[list[str], Encoded] | None = None

    def __call__(self, i: int, j: int) -> Tensor:
        enc = self.preprocessing.encode(self.texts[i:j])
        self.last = (self.texts[i:j], enc)
        return enc.ids


def _word_attributions(model: nn.Module, ids: Tensor, target: Tensor, load: _TextLoader, method: str | None) -> list[list[tuple[str, float]]]:
    """Each text of the last loaded batch: its token attributions for ``target`` summed per word, ``[(word, score), ...]``."""
    from .explain import attribute, word_scores

    assert load.last is not None
    texts, enc = load.last
    scores = attribute(model, ids, target, method or "integrated_gradients").cpu()
    out = []
    for text, off, row in zip(texts, enc.offsets, scores):
        spans, values = word_scores(text, off, row[: len(off)])
        out.append([(text[a:b], float(v)) for (a, b), v in zip(spans, values)])
    return out


def predict(
    model: nn.Module,
    spec: InputSpec,
    preprocessing: TablePreprocessor | TextPreprocessor | None,
    input_path: str | Path,
    *,
    explain: bool = False,
    method: str | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Predict the class of every input in ``input_path``.

    Args:
        model: A classifier returning (B, C) logits (any device; run in eval mode).
        spec: The training data's :class:`InputSpec` (shape, classes, normalisation).
        preprocessing: The fitted table preprocessing for CSV models, the
            :class:`~distilens.data.text.TextPreprocessor` for text models, else ``None``.
        input_path: An image, a folder of images (recursive, sorted; hidden files and other
            extensions skipped) or a CSV file (a target column, if present, is ignored); for
            text models a .csv/.tsv/.jsonl file with the training text column.
        explain: Also attribute each prediction to the input.
        method: Explainer for ``explain`` (default ``integrated_gradients``).
        batch_size: Inputs decoded and predicted at a time (bounds memory).

    Returns:
        One dict per input, in order: ``source`` (path relative to a folder, or
        ``file.csv:row N`` with file row numbers; ``file.csv:line N`` for texts), ``class``,
        ``probability``; with
        ``explain``, ``attribution``: a (C, H, W) CPU tensor for images (or (1, H, W)
        for gradcam), a ``{feature: value}`` dict for tables, a ``[(word, score), ...]``
        list for texts (token scores summed per word of the text, in text order).

    Example:
        >>> rows = predict(student, spec, None, "new_photos/")
        >>> rows[0]
        {'source': 'a.png', 'class': 'cat', 'probability': 0.93}
    """
    names, load = _sources(spec, preprocessing, Path(input_path))
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(names), batch_size):
            x = load(start, start + batch_size).to(device)
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), dim=1).cpu()
            p, k = probs.max(dim=1)
            maps = None
            if explain and spec.kind == "text":
                maps = _word_attributions(model, x, k.to(device), load, method)
            elif explain:
                from .explain import attribute

                maps = attribute(model, x, target=k.to(device), method=method or "integrated_gradients").cpu()
            for i in range(len(k)):
                row: dict[str, Any] = {
                    "source": names[start + i], "class": spec.class_names[int(k[i])], "probability": float(p[i])
                }
                if maps is not None:
                    feats = spec.feature_names
                    row["attribution"] = (
                        {f: float(v) for f, v in zip(feats, maps[i].tolist())} if spec.kind == "table" and feats else maps[i]
                    )
                rows.append(row)
    finally:
        model.train(was_training)
    return rows


def write_predictions(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``source,class,probability`` as CSV (atomically); table attributions become columns.

    Image attribution maps are not written here (save them as images or tensors); text
    attributions go into a ``words`` column (:func:`words_cell`).
    """
    buf = io.StringIO()
    extra = sorted({k for r in rows if isinstance(r.get("attribution"), dict) for k in r["attribution"]})
    writer = csv.writer(buf, lineterminator="\n")
    text = any(isinstance(r.get("attribution"), list) for r in rows)
    writer.writerow(["source", "class", "probability", *(f"attribution:{f}" for f in extra), *(["words"] if text else [])])
    for r in rows:
        attr = r.get("attribution") if isinstance(r.get("attribution"), dict) else {}
        cells = [r["source"], r["class"], f"{r['probability']:.6f}", *(f"{attr.get(f, 0.0):.6g}" for f in extra)]
        writer.writerow(cells + ([words_cell(r.get("attribution") or [])] if text else []))
    return atomic_write_text(path, buf.getvalue())


def words_cell(words: list[tuple[str, float]]) -> str:
    """A text's word attributions as one CSV cell: a JSON list of ``[word, score]`` in text order."""
    return json.dumps([[w, round(v, 6)] for w, v in words], ensure_ascii=False)
