"""The report's text section: highlighted words of teacher and student, influential words, galleries.

:func:`text_context` turns the payload of :func:`distilens.explain.text_payload.text_payload`
(``explanations/text.json``, written by the explain stage on text) into plain values for
``text.html.j2``. Nothing here builds HTML: the template writes every word, class name and
score through Jinja2's autoescape, and the only markup values computed here are background
colours made from numbers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["text_context", "word_segments", "score_colour"]

#: Red for words that support the explained class, blue for words that speak against it.
_POSITIVE = (214, 39, 40)
_NEGATIVE = (31, 119, 180)
_GALLERIES = (
    ("same_class_disagree", "Same answer, other words"),
    ("different_class", "Different answers"),
    ("moved_towards", "Where distillation moved the student's words most towards the teacher's (vs the label-only student)"),
    ("moved_away", "Where distillation moved the student's words most away from the teacher's (vs the label-only student)"),
)


def score_colour(value: float | None, scale: float) -> str:
    """CSS background for a score: red (positive) or blue (negative), opacity |value| / scale.

    Example:
        >>> score_colour(0.5, 1.0)
        'rgba(214,39,40,0.400)'
    """
    if value is None or not math.isfinite(value) or scale <= 0:
        return "transparent"
    r, g, b = _POSITIVE if value >= 0 else _NEGATIVE
    return f"rgba({r},{g},{b},{0.8 * min(1.0, abs(value) / scale):.3f})"


def word_segments(text: str, spans: Sequence[Sequence[int]], scores: Sequence[float | None]) -> list[dict[str, Any]]:
    """``text`` cut into segments: words with a colour and a tooltip, the text between them plain.

    Scores are scaled by the row's largest |score|, so each model's row uses its full colour
    range (teacher and student scores have different units).

    Example:
        >>> [s["text"] for s in word_segments("so good!", [(0, 2), (3, 7), (7, 8)], [0.1, 0.9, -0.2])]
        ['so', ' ', 'good', '!']
    """
    scale = max((abs(s) for s in scores if s is not None and math.isfinite(s)), default=0.0)
    out: list[dict[str, Any]] = []
    end = 0
    for (a, b), s in zip(spans, scores):
        if a > end:
            out.append({"text": text[end:a], "colour": None, "tip": None})
        out.append({"text": text[a:b], "colour": score_colour(s, scale), "tip": "–" if s is None else f"{s:+.3g}"})
        end = b
    if end < len(text):
        out.append({"text": text[end:], "colour": None, "tip": None})
    return out


def _name(names: Sequence[str], c: int | None) -> str:
    if c is None:
        return "–"
    return names[c] if 0 <= c < len(names) else str(c)


def _row(payload: dict[str, Any], method: dict[str, Any], pos: int) -> dict[str, Any]:
    names = payload["class_names"]
    text, spans = payload["texts"][pos], payload["words"][pos]
    labels = payload.get("labels")
    rho = method["scores"].get("spearman", [None] * (pos + 1))[pos]
    baseline = (method.get("models") or {}).get("baseline") or {}
    b_rho = baseline.get("scores", {}).get("spearman", [None] * (pos + 1))[pos] if baseline else None
    return {
        "index": payload["sample_indices"][pos],
        "target": _name(names, payload["targets"][pos]),
        "label": _name(names, labels[pos]) if labels else None,
        "teacher_pred": _name(names, payload["teacher_pred"][pos]),
        "student_pred": _name(names, payload["student_pred"][pos]),
        "spearman": "–" if rho is None else f"{rho:.2f}",
        "teacher": word_segments(text, spans, method["teacher"][pos]),
        "student": word_segments(text, spans, method["student"][pos]),
        "baseline": word_segments(text, spans, baseline["words"][pos]) if baseline.get("words") else None,
        "baseline_spearman": "–" if b_rho is None else f"{b_rho:.2f}",
    }


def text_context(payload: dict[str, Any], *, rows: int = 8, gallery_rows: int = 4) -> dict[str, Any]:
    """Template values for the text section, one entry per explanation method.

    Args:
        payload: The content of ``explanations/text.json``.
        rows: Texts shown highlighted per method (the first of the stratified sample).
        gallery_rows: Texts per gallery.

    Returns:
        ``{"methods": [{"method", "rows", "top_words", "galleries"}], "skipped": {...}}``;
        ``top_words`` lists, per class, the teacher's and the student's words side by side.

    Example:
        >>> ctx = text_context(json.loads((run_dir / "explanations/text.json").read_text()))
    """
    out = []
    for name, method in payload["methods"].items():
        n = len(payload["texts"])
        top = method.get("top_words", {})
        classes = [c for c in payload["class_names"] if c in top.get("teacher", {}) or c in top.get("student", {})]
        out.append({
            "method": name,
            "rows": [_row(payload, method, p) for p in range(min(rows, n))],
            "top_words": [
                {
                    "class": c,
                    "teacher": [f"{w['word']} ({w['score']:+.2f})" for w in top.get("teacher", {}).get(c, [])],
                    "student": [f"{w['word']} ({w['score']:+.2f})" for w in top.get("student", {}).get(c, [])],
                }
                for c in classes
            ],
            "galleries": [
                {"title": title, "rows": [_row(payload, method, p) for p in method["galleries"].get(key, [])[:gallery_rows]]}
                for key, title in _GALLERIES if key in method["galleries"]  # the moved ones need the baseline
            ],
        })
    return {"methods": out, "skipped": payload.get("skipped", {})}
