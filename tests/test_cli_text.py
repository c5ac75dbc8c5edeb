"""`distilens run`, `predict` and `export` end to end on a tiny generated text CSV, per student kind.

The runs are conftest.py's ``finished_runs`` "text:embedding_bag" (it trains the teacher),
"text:text_cnn" and "text:tiny_transformer" (they load it); e2e.py writes the reviews.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from distilens.data.tokenize import TextTokenizer
from distilens.models import load_model
from e2e import TEXT_STUDENTS, FinishedRuns

STUDENTS = list(TEXT_STUDENTS)


@pytest.fixture
def runs(finished_runs: FinishedRuns) -> dict[str, Path]:
    """The three students' run folders (shared: read them only), made on first use."""
    return {student: finished_runs.get(f"text:{student}").path for student in STUDENTS}


@pytest.mark.parametrize("student", STUDENTS)
def test_run_writes_metrics_tokenizer_and_report(runs, student: str) -> None:
    run = runs[student]
    for name in ("tokenizer.json", "teacher.safetensors", "student.safetensors", "metrics.json", "report.html"):
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    copies = m["dataset"].pop("transfer_copies", 0)
    split = m["dataset"].pop("split")  # no split given: test and val drawn with the seed
    assert split == {"test": "seeded", "val": "seeded", "seed": 0, "test_fraction": 0.2, "val_fraction": 0.1}
    assert m["dataset"] == {"name": "reviews", "num_classes": 2, "n_train": 140, "n_val": 20, "n_test": 40, "loading": "memory"}
    assert (140 < copies <= 280) == (student == "text_cnn")  # most texts give two distinct copies
    with safe_open(str(run / "predictions.safetensors"), "pt") as f:
        assert f.get_slice("train/teacher").get_shape() == [140, 2]  # the report's soft labels: training texts only
    (cache_file,) = (run / "cache").glob("softlabels-*.safetensors")
    with safe_open(str(cache_file), "pt") as f:  # the student learnt from the teacher's outputs on the copies too
        assert f.get_slice("top_class").get_shape()[0] == 140 + copies
    assert m["teacher"]["accuracy"] >= 0.75  # one sentiment word decides; the rest is filler
    first = json.loads((runs["embedding_bag"] / "metrics.json").read_text())
    assert m["teacher"]["accuracy"] == first["teacher"]["accuracy"]  # the same teacher, loaded
    for key in ("accuracy", "agreement", "predictive_kl", "ece", "params", "flops", "latency_ms"):
        assert key in m["student"], key
    assert set(m["student"]["latency_ms"]) == {"batch1", "batch64"}
    assert m["teacher"]["flops"] > 0 and m["compression"]["params_ratio"] > 0
    expl = m["explanations"]  # word level: the image-only gradcam is skipped, IG runs on tokens
    assert expl["level"] == "word" and "gradcam" in expl["skipped"]
    assert [b["method"] for b in expl["methods"]] == ["integrated_gradients"] and expl["n_samples"] == 40
    assert -1.0 <= expl["agreement"]["spearman"] <= 1.0
    # Faithfulness and the sanity check under the same keys as for images.
    assert 0.0 <= expl["faithfulness"]["student"]["deletion_auc"] <= 1.0 and "insertion_auc" in expl["faithfulness"]["teacher"]
    assert expl["sanity"]["method"] == "integrated_gradients" and expl["sanity"]["student"]["layers"]
    assert (run / "explanations" / "text.json").is_file()
    assert ("baseline" in m) == (student == "embedding_bag")
    ref = m["reference"]  # TF-IDF + LR on the same split, a floor every text run reports
    assert ref["name"] == "tfidf_logreg" and 0.0 <= ref["test_accuracy"] <= 1.0 and ref["C"] > 0
    spec = json.loads((run / "student.json").read_text())["input_spec"]
    assert spec["kind"] == "text" and 5 <= spec["shape"][0] <= 24 and spec["vocab_size"] > 20
    html = (run / "report.html").read_text()
    assert "reviews" in html and "<script src=" not in html
    assert "integrated_gradients: highlighted words" in html and '<span class="who">student</span>' in html


def test_predict_matches_the_student_on_tokenised_text(runs, cli, tmp_path) -> None:
    run = runs["embedding_bag"]
    new = tmp_path / "new.csv"
    new.write_text('id,review\n1,"A brilliant, superb film!"\n2,Dull and boring ending.\n', encoding="utf-8")
    result = cli("predict", str(run), str(new))
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "source,class,probability" and len(lines) == 3
    student, meta = load_model(run / "student.safetensors")
    tok = TextTokenizer.from_file(run / "tokenizer.json")
    ids = tok.encode(["A brilliant, superb film!", "Dull and boring ending."], meta["input_spec"]["shape"][0]).ids
    probs = student(ids).softmax(1)
    names = meta["input_spec"]["class_names"]
    for line, p in zip(lines[1:], probs):
        source, cls, prob = line.split(",")
        assert cls == names[int(p.argmax())] and abs(float(prob) - float(p.max())) < 1e-5
    assert lines[1].startswith("new.csv:line 2,")


def test_predict_explain_gives_word_scores(runs, cli, tmp_path) -> None:
    from distilens.explain import attribute, word_scores

    run = runs["text_cnn"]
    texts = ["A brilliant, superb film!", "Dull and boring ending."]
    new = tmp_path / "new.csv"
    new.write_text('review\n"A brilliant, superb film!"\nDull and boring ending.\n', encoding="utf-8")
    result = cli("predict", str(run), str(new), "--explain")
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [r["source"] for r in rows] == ["new.csv:line 2", "new.csv:line 3"]
    got = [json.loads(r["words"]) for r in rows]
    assert [[w for w, _ in g] for g in got] == [["A", "brilliant", ",", "superb", "film", "!"], ["Dull", "and", "boring", "ending", "."]]
    # The same numbers as attributing the student directly (IG for the predicted class), summed per word.
    student, meta = load_model(run / "student.safetensors")
    enc = TextTokenizer.from_file(run / "tokenizer.json").encode(texts, meta["input_spec"]["shape"][0], pad_to_max=True)
    target = student.eval()(enc.ids).argmax(1)
    scores = attribute(student, enc.ids, target, "integrated_gradients")
    for g, text, off, row in zip(got, texts, enc.offsets, scores):
        _, expected = word_scores(text, off, row[: len(off)])
        assert [v for _, v in g] == pytest.approx(expected.tolist(), abs=1e-5)
    out = tmp_path / "pred.csv"
    assert cli("predict", str(run), str(new), "--explain", "--out", str(out)).code == 0
    assert [json.loads(r["words"]) for r in csv.DictReader(out.open(encoding="utf-8"))] == got


def test_predict_on_a_file_without_the_text_column_is_a_one_line_error(runs, cli, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("comment\nhello\n", encoding="utf-8")
    result = cli("predict", str(runs["text_cnn"]), str(bad))
    assert result.code == 2
    err = result.stderr.strip()
    assert err.startswith("error:") and "'review' not found" in err and "\n" not in err


@pytest.mark.parametrize("student", STUDENTS)
def test_export_torchscript_takes_token_ids(runs, student: str, cli, tmp_path) -> None:
    run = runs[student]
    result = cli("export", str(run), "--format", "torchscript", "--out", str(tmp_path / "student.pt"))
    assert result.code == 0, result.stderr
    scripted = torch.jit.load(str(tmp_path / "student.pt"))
    model, meta = load_model(run / "student.safetensors")
    ids = torch.randint(0, meta["input_spec"]["vocab_size"], (3, meta["input_spec"]["shape"][0]))
    assert torch.allclose(scripted(ids), model(ids), atol=1e-5)


def test_explain_command_runs_token_explainers_on_text(runs, finished_runs: FinishedRuns, cli, tmp_path) -> None:
    run = finished_runs.copy("text:tiny_transformer", tmp_path).path  # a transformer teacher and student: rollout applies
    had = [b["method"] for b in json.loads((run / "metrics.json").read_text())["explanations"]["methods"]]
    result = cli("explain", str(run), "--method", "attention_rollout", "--method", "occlusion")
    assert result.code == 0, result.stderr
    block = json.loads((run / "metrics.json").read_text())["explanations"]
    added = [m for m in ("attention_rollout", "occlusion") if m not in had]
    assert [b["method"] for b in block["methods"]] == had + added  # --method adds to the run's methods
    payload = json.loads((run / "explanations" / "text.json").read_text())
    assert "attention_rollout" in json.dumps(payload)
    assert "attention_rollout: highlighted words" in (run / "report.html").read_text()
    # An image explainer named explicitly on text, or rollout on a bag of embeddings: one line, exit 2.
    errors = [cli("explain", str(run), "--method", "gradcam"),
              cli("explain", str(runs["embedding_bag"]), "--method", "attention_rollout")]
    assert [e.code for e in errors] == [2, 2]
    err = [line for e in errors for line in e.stderr.strip().splitlines()]
    assert len(err) == 2 and "attention maps" in err[1] and "Traceback" not in "".join(err)


def test_the_reference_is_tfidf_logreg_on_the_runs_own_split(runs) -> None:
    """metrics.json ``reference`` equals fitting TF-IDF + LR again on the split the run read; the report says it."""
    from distilens.config import load_config
    from distilens.pipeline import load_run_data
    from distilens.reference import tfidf_logreg

    run = runs["embedding_bag"]
    m = json.loads((run / "metrics.json").read_text())
    bundle = load_run_data(load_config(run / "config.yaml"))
    assert len(bundle.texts["train"]) == m["dataset"]["n_train"]  # the original texts, not the transfer copies
    again = tfidf_logreg(bundle.texts["train"], bundle.train.targets, bundle.texts["val"], bundle.val.targets,
                         bundle.texts["test"], bundle.test.targets, seed=m["seed"])
    assert {k: again[k] for k in ("C", "val_accuracy", "test_accuracy", "features")} == \
        {k: m["reference"][k] for k in ("C", "val_accuracy", "test_accuracy", "features")}
    assert "Reference: TF-IDF" in (run / "report.html").read_text()
