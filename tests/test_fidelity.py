"""Prediction fidelity per test sample, paired with the label-only student; what the teacher must beat."""

from __future__ import annotations

import pytest
import torch

from distilens.data import load_dataset
from distilens.fidelity import fidelity_block, per_sample_fidelity
from distilens.simple_models import linear_model, majority_class, simple_models
from distilens.testing import tiny_bundle


def test_per_sample_fidelity_by_hand() -> None:
    t = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    s = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    f = per_sample_fidelity(t, s, y)
    assert f["accuracy"].tolist() == [1.0, 0.0, 1.0]
    assert f["agreement"].tolist() == [1.0, 0.0, 0.0]
    assert f["predictive_kl"][0] == pytest.approx(0.0, abs=1e-7) and bool((f["predictive_kl"][1:] > 0).all())


def test_a_student_equal_to_the_teacher_is_more_faithful_than_another() -> None:
    torch.manual_seed(0)
    t = torch.randn(200, 5)
    y = t.argmax(1)
    other = t + 2.0 * torch.randn(200, 5)
    block = fidelity_block(t, y, {"student": t.clone(), "baseline": other})
    d = block["student_minus_baseline"]
    assert block["n"] == 200
    assert d["agreement"]["mean"] > 0 and d["agreement"]["ci_low"] > 0 and d["agreement"]["losses"] == 0
    assert d["predictive_kl"]["ci_high"] < 0  # the student's KL is 0 everywhere
    same = fidelity_block(t, y, {"student": other, "baseline": other.clone()})["student_minus_baseline"]
    assert all(e["mean"] == 0 and e["ties"] == 200 for e in same.values())
    assert fidelity_block(t, y, {"student": t}) == {}  # nothing to compare with


def test_majority_and_linear_models() -> None:
    assert majority_class(torch.tensor([2, 2, 1]), torch.tensor([2, 0, 2, 2]), ("a", "b", "c")) == {
        "accuracy": 0.75, "class": 2, "class_name": "c"}
    bundle = load_dataset("builtin:digits", seed=0)
    block = simple_models(bundle)
    assert block["majority"]["accuracy"] == pytest.approx(0.1, abs=0.02)
    assert block["linear"]["accuracy"] > 0.85 and block["linear"]["model"] == "ridge classifier on pixels"
    assert linear_model(bundle, max_cells=10)["skipped"].endswith("too many to fit one cheaply")


def test_linear_model_on_text_counts(tmp_path) -> None:
    from distilens.data import load_data
    from distilens.config import DataConfig

    rows = ["text,label"] + [f"good fine great film {i},pos" for i in range(30)] + [f"bad awful dull film {i},neg" for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    bundle = load_data(DataConfig(source=f"csv:{tmp_path / 't.csv'}", text="text", target="label"), seed=0)
    block = linear_model(bundle)
    assert block["model"] == "naive Bayes on token counts" and block["accuracy"] == 1.0


def test_linear_model_on_a_table() -> None:
    block = linear_model(tiny_bundle(n=90, shape=(6,)))
    assert block["model"] == "ridge classifier on columns" and 0.0 <= block["accuracy"] <= 1.0
