"""The report's text section: highlighted words, influential words, galleries, and escaping."""

from __future__ import annotations

import json
import re

import pytest
import torch

from distilens.explain import TEXT_PAYLOAD, ExplainInputs, explain_stage, save_text_explanations
from distilens.io import atomic_write_json
from distilens.report.build import write_run_report
from distilens.report.html import render_report
from distilens.report.text import score_colour, text_context, word_segments
from distilens.testing.text import MeanBag, TinyAttention, encode, wordlevel, wordpiece

pytest.importorskip("tokenizers")

EVIL = "<script>alert(1)</script>"
TEXTS = [f"a good film {EVIL}", "a bad film", "good good", "bad , bad film", f"{EVIL} bad"]
WP = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "good", "bad", "fi", "##lm", ",", "<", ">", "/", "(", ")", "script", "alert", "1"]
WL = ["[PAD]", "[UNK]", "a", "good", "bad", "film", ",", "<", ">", "/", "(", ")", "script", "alert", "1"]


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> tuple[dict, dict]:
    """The explain stage of a text run: its metrics block and the explanations/text.json it wrote."""
    folder = tmp_path_factory.mktemp("run")
    teacher = TinyAttention(vocab=len(WP), classes=2, seed=4)
    student = MeanBag(vocab=len(WL), classes=2, hidden=3, seed=5)
    inputs = ExplainInputs.from_texts(
        TEXTS, torch.tensor([1, 0, 1, 0, 0]), encode(wordpiece(WP), TEXTS), encode(wordlevel(WL), TEXTS),
        class_names=["rotten", EVIL], targets=torch.tensor([1, 0, 1, 0, 1]), top_words=3,
    )
    block = explain_stage(teacher, student, inputs, ["integrated_gradients", "occlusion"], folder)
    return block, json.loads((folder / TEXT_PAYLOAD).read_text(encoding="utf-8"))


def _render(payload: dict) -> str:
    return render_report({}, name="text", config_yaml="", figures={}, methods=[], checks=[], missing=[], command=None,
                         text=text_context(payload))


def test_word_segments_rebuild_the_text_and_colour_signed_scores() -> None:
    text = "  Naïve café!  "
    spans = [(2, 7), (8, 12), (12, 13)]
    segs = word_segments(text, spans, [0.5, -1.0, None])
    assert "".join(s["text"] for s in segs) == text
    words = [s for s in segs if s["colour"] is not None]
    assert [w["text"] for w in words] == ["Naïve", "café", "!"]
    assert words[0]["colour"] == "rgba(214,39,40,0.400)"  # positive: red, half the row's largest |score|
    assert words[1]["colour"] == "rgba(31,119,180,0.800)"  # negative: blue, the largest
    assert words[2]["colour"] == "transparent" and words[2]["tip"] == "–"
    assert score_colour(0.0, 0.0) == "transparent"


def test_the_text_section_renders_and_escapes_words_and_class_names(explained) -> None:
    _, payload = explained
    html = _render(payload)
    assert "<script>" not in html and "alert(1)</script>" not in html
    assert "&lt;script&gt;" in html  # the word and the class name are shown as text
    assert re.search(r"explained for &lt;script&gt;alert\(1\)&lt;/script&gt;", html)  # class name
    for title in ("integrated_gradients: highlighted words", "occlusion: highlighted words", "most influential words per class"):
        assert title in html
    # Every explained text, once per model, with each word in a coloured span.
    assert html.count('<span class="who">teacher</span>') >= len(TEXTS)
    assert html.count('class="w" style="background: rgba(') > 0
    # The highlighted words spell the text back (spans, then the plain text between them).
    first = re.search(r'<span class="who">student</span>(.*?)</p>', html).group(1)
    assert re.sub(r"<[^>]+>", "", first).replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'") == TEXTS[0]


def test_galleries_split_same_and_different_answers(explained) -> None:
    block, payload = explained
    ig = payload["methods"]["integrated_gradients"]
    same = [p == q for p, q in zip(payload["teacher_pred"], payload["student_pred"])]
    assert all(same[p] for p in ig["galleries"]["same_class_disagree"])
    assert not any(same[p] for p in ig["galleries"]["different_class"])
    assert len(ig["galleries"]["same_class_disagree"]) + len(ig["galleries"]["different_class"]) == len(TEXTS)
    # Lowest word agreement first (undefined last).
    rho = [ig["scores"]["spearman"][p] for p in ig["galleries"]["same_class_disagree"]]
    defined = [r for r in rho if r is not None]
    assert defined == sorted(defined) and rho[: len(defined)] == defined
    ctx = text_context(payload)["methods"][0]
    titles = {g["title"]: len(g["rows"]) for g in ctx["galleries"]}
    assert set(titles) == {"Same answer, other words", "Different answers"}
    assert block["galleries"]["same_class_disagree"] == [payload["sample_indices"][p] for p in ig["galleries"]["same_class_disagree"]]


def test_top_words_are_shares_of_relevance_per_class(explained) -> None:
    _, payload = explained
    top = payload["methods"]["occlusion"]["top_words"]
    assert set(top["teacher"]) <= {"rotten", EVIL}
    for role in ("teacher", "student"):
        for words in top[role].values():
            assert len(words) <= 3
            assert [w["score"] for w in words] == sorted((w["score"] for w in words), reverse=True)
            assert all(abs(w["score"]) <= sum(1 for t in TEXTS) for w in words)  # each text adds a share ≤ 1
            assert all(w["word"] == w["word"].lower() and w["count"] >= 1 for w in words)


def test_write_run_report_renders_explanations_text_json(explained, tmp_path) -> None:
    block, payload = explained
    save_text_explanations(tmp_path, payload)
    assert json.loads((tmp_path / TEXT_PAYLOAD).read_text()) == payload
    atomic_write_json(tmp_path / "metrics.json", {"explanations": block})
    html = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "integrated_gradients: highlighted words" in html
    assert "deletion AUC" in html and "Sanity check" in html  # faithfulness and sanity, as for images
    assert "explanations.safetensors" not in html  # text runs keep their maps in explanations/text.json
    assert "<script>" not in html
    # Without the payload the report still renders and says what is missing.
    (tmp_path / TEXT_PAYLOAD).unlink()
    html = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "explanations/text.json" in html and "highlighted words" not in html
