"""The record of a word-level comparison that the report renders: ``explanations/text.json``.

One entry per method: each text's word scores for teacher and student, the words both
tokenizations reach, the per-text agreement, the galleries, and the most influential words
per class (:func:`distilens.report.text.text_context` turns it into the report's section).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..io import atomic_write_json
from .comparison import Comparison

__all__ = ["TEXT_PAYLOAD", "text_payload", "save_text_explanations", "influential_words"]

#: Where the report payload lives in a run folder.
TEXT_PAYLOAD = Path("explanations") / "text.json"

#: Version of the payload's layout.
_VERSION = 1


def text_payload(
    comparisons: Sequence[Comparison],
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    *,
    rows: Tensor,
    labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    skipped: Mapping[str, str] | None = None,
    top_words: int = 10,
    gallery_size: int = 8,
) -> dict[str, Any]:
    """The JSON the report renders, from word-aligned comparisons of the same texts.

    Args:
        comparisons: One per method, aligned on words (``cmp.aligned``: (N, W) word scores
            and the words both sides cover).
        texts: The N explained texts; ``spans``: their :func:`~.words.words`.
        rows: (N,) the texts' indices in the split (``sample_indices``).
        labels: (N,) true classes, shown in the report.
        class_names: Names of the classes (default "0", "1", …).
        skipped: Methods left out, with the reason.
        top_words: Words per class and model in ``top_words``.
        gallery_size: Texts per gallery.

    Example:
        >>> save_text_explanations(run_dir, text_payload(comparisons, texts, spans, rows=idx))
    """
    first = comparisons[0]
    n_classes = int(torch.cat([first.targets, first.teacher_pred, first.student_pred]).max()) + 1
    names = [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(n_classes)]
    methods = {}
    for cmp in comparisons:
        if cmp.aligned is None or cmp.aligned.covered is None:
            raise ValueError(f"text_payload: comparison '{cmp.method}' is not aligned on words")
        width = [len(s) for s in spans]
        t_words = [cmp.aligned.teacher[i, :w] for i, w in enumerate(width)]
        s_words = [cmp.aligned.student[i, :w] for i, w in enumerate(width)]
        covered = [cmp.aligned.covered[i, :w] for i, w in enumerate(width)]
        methods[cmp.method] = {
            "teacher": [_json_list(w) for w in t_words],
            "student": [_json_list(w) for w in s_words],
            "covered": [c.tolist() for c in covered],
            "scores": {k: [_json_float(float(x)) for x in v] for k, v in cmp.scores.items()},
            "galleries": cmp.galleries(gallery_size),  # positions in the sample
            "top_words": {
                role: influential_words(texts, spans, maps, covered, cmp.targets, names, top_words)
                for role, maps in (("teacher", t_words), ("student", s_words))
            },
        }
        if cmp.others:  # the controls and reference points, word by word: {role: {words, scores, pred}}
            methods[cmp.method]["models"] = {
                role: {
                    "words": [_json_list(m.aligned.student[i, :w]) for i, w in enumerate(width)] if m.aligned is not None else None,
                    "scores": {k: [_json_float(float(x)) for x in v] for k, v in m.scores.items()},
                    "pred": m.pred.tolist(),
                }
                for role, m in cmp.others.items()
            }
    return {
        "version": _VERSION,
        "class_names": names,
        "sample_indices": [int(i) for i in rows],
        "texts": list(texts),
        "words": [[list(s) for s in sp] for sp in spans],
        "targets": first.targets.tolist(),
        "labels": None if labels is None else torch.as_tensor(labels).long().tolist(),
        "teacher_pred": first.teacher_pred.tolist(),
        "student_pred": first.student_pred.tolist(),
        "methods": methods,
        "skipped": dict(skipped or {}),
    }


def influential_words(
    texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], maps: Sequence[Tensor], covered: Sequence[Tensor],
    target: Tensor, names: Sequence[str], k: int,
) -> dict[str, list[dict[str, Any]]]:
    """Per explained class: the ``k`` words (lower-cased) with the largest summed share of relevance.

    Each text's word scores are divided by their total |score| (so long texts and models on
    different scales weigh alike), then summed per word over the texts explained for that class.
    """
    total: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for text, sp, m, cov, c in zip(texts, spans, maps, covered, target.tolist()):
        cov = cov & torch.isfinite(m)
        mass = float(m[cov].abs().sum())
        if mass == 0:
            continue
        for (a, b), v, ok in zip(sp, m.tolist(), cov.tolist()):
            if ok:
                word = text[a:b].lower()
                total[c][word] += v / mass
                count[c][word] += 1
    out = {}
    for c in sorted(total):
        best = sorted(total[c].items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[names[c] if c < len(names) else str(c)] = [{"word": w, "score": s, "count": count[c][w]} for w, s in best]
    return out


def save_text_explanations(run_dir: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``run_dir/explanations/text.json`` atomically; the report renders it."""
    return atomic_write_json(Path(run_dir) / TEXT_PAYLOAD, payload)


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else float(x)


def _json_list(t: Tensor) -> list[float | None]:
    return [_json_float(float(x)) for x in t]
