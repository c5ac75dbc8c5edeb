"""Predict with a trained model on new files: an image, a folder of images, a CSV table or texts.

Reading goes through the run's :class:`~distilens.data.preprocessing.Preprocessor`
(``preprocessing.json``): images get exactly the training decoding and per-channel
normalisation, CSV rows the fitted imputation, one-hot columns and standardisation, texts
the training tokenizer cut to the model's length.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import InputSpec, Preprocessor, preprocessing_for
from .io import atomic_write_text, spreadsheet_safe
from .modalities import modality_of

__all__ = ["predict", "write_predictions", "probability_cell", "words_cell"]


def predict(
    model: nn.Module,
    spec: InputSpec,
    preprocessing: Preprocessor | None,
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
        preprocessing: The run's preprocessing (:func:`~distilens.data.load_preprocessing`);
            ``None`` for images reads them as ``spec`` describes (tables and texts need theirs).
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
        list for texts (token scores summed per word of the text, in text order), and
        ``input``: the row's model input (CPU tensor), over which image maps are drawn.

    Example:
        >>> rows = predict(student, spec, None, "new_photos/")
        >>> rows[0]
        {'source': 'a.png', 'class': 'cat', 'probability': 0.93}
    """
    inputs = (preprocessing if preprocessing is not None else preprocessing_for(spec)).read(input_path)
    modality = modality_of(spec)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(inputs), batch_size):
            x = inputs.batch(start, start + batch_size).to(device)
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), dim=1).cpu()
            p, k = probs.max(dim=1)
            # the modality's attribution per row: a map (images), {feature: value} (tables), [(word, score)] (texts)
            maps = modality.attribute_rows(model, x, k.to(device), inputs, start, spec, method) if explain else None
            for i in range(len(k)):
                row: dict[str, Any] = {
                    "source": inputs.names[start + i], "class": spec.class_names[int(k[i])], "probability": float(p[i])
                }
                if maps is not None:
                    row["attribution"] = maps[i]
                    row["input"] = x[i].detach().cpu()  # what the map is drawn over
                rows.append(row)
    finally:
        model.train(was_training)
    return rows


def write_predictions(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``source,class,probability`` as CSV (atomically); table attributions become columns.

    Image attribution maps are not written here: a ``heatmap`` column names each row's PNG
    (:meth:`~distilens.modalities.image.ImageModality.write_attributions` writes them); text
    attributions go into a ``words`` column (:func:`words_cell`).
    """
    buf = io.StringIO()
    extra = sorted({k for r in rows if isinstance(r.get("attribution"), dict) for k in r["attribution"]})
    writer = csv.writer(buf, lineterminator="\n")
    text = any(isinstance(r.get("attribution"), list) for r in rows)
    heatmaps = any("heatmap" in r for r in rows)  # images with --explain: the PNG written for each input
    writer.writerow(["source", "class", "probability", *(f"attribution:{f}" for f in extra), *(["words"] if text else []),
                     *(["heatmap"] if heatmaps else [])])
    for r in rows:
        attr = r.get("attribution") if isinstance(r.get("attribution"), dict) else {}
        cells = [spreadsheet_safe(r["source"]), spreadsheet_safe(r["class"]), probability_cell(r["probability"]),
                 *(f"{attr.get(f, 0.0):.6g}" for f in extra)]
        writer.writerow(cells + ([words_cell(r.get("attribution") or [])] if text else [])
                        + ([spreadsheet_safe(r.get("heatmap", ""))] if heatmaps else []))
    return atomic_write_text(path, buf.getvalue())


def probability_cell(p: float) -> str:
    """A probability as printed on stdout and written to ``--out`` alike (6 decimals)."""
    return f"{p:.6f}"


def words_cell(words: list[tuple[str, float]]) -> str:
    """A text's word attributions as one CSV cell: a JSON list of ``[word, score]`` in text order."""
    return json.dumps([[w, round(v, 6)] for w, v in words], ensure_ascii=False)
