"""The control in the explain stage: the label-only baseline (and reference points) explained against the same teacher maps.

Planted cases first (a student that is a copy of the teacher agrees with it exactly; a
student and baseline that are the same model differ by exactly 0), then the contract of the
metrics.json blocks, the saved maps, the scale and the text payload.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from distilens.config import ExplainConfig
from distilens.data import load_dataset
from distilens.explain import ExplainInputs, compare, explain_models, explain_stage
from distilens.explain.comparison import Comparison
from distilens.explain.evidence import agreement_scale, paired_differences
from distilens.models import build_model
from distilens.testing import assert_no_hooks


def _other_model(digits, seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", digits.spec, width=4).eval()


def test_a_copy_of_the_teacher_agrees_exactly_and_beats_the_baseline(cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    student = copy.deepcopy(teacher)  # planted: the student is the teacher
    baseline = _other_model(digits)
    _, block = explain_models(teacher, student, digits.test, ["saliency", "integrated_gradients"], 24, seed=0, sanity=False,
                              steps=4, others={"baseline": baseline})
    for m in block["methods"]:
        mine = m["models"]["student"]["agreement"]
        assert mine["spearman"] == pytest.approx(1.0) and mine["cosine"] == pytest.approx(1.0)
        assert m["models"]["student"]["same_prediction"] == 1.0
        theirs = m["models"]["baseline"]["agreement"]["spearman"]
        assert theirs < 0.99
        d = m["paired"]["student_minus_baseline"]["spearman"]
        assert d["mean"] == pytest.approx(1.0 - theirs, abs=1e-6)
        assert d["ci_low"] > 0 and d["wins"] == d["n"] == 24 and d["p_value"] < 1e-4
    # the flat keys stay the student's, as before
    assert block["agreement"]["spearman"] == pytest.approx(1.0)
    assert block["models"] == block["methods"][0]["models"] and block["paired"] == block["methods"][0]["paired"]


def test_student_and_baseline_the_same_model_differ_by_zero(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    _, block = explain_models(teacher, student, digits.test, ["saliency"], 30, seed=0, sanity=False, steps=4,
                              others={"baseline": copy.deepcopy(student)})
    d = block["paired"]["student_minus_baseline"]
    for score, entry in d.items():
        assert entry["mean"] == 0.0 and entry["ci_low"] <= 0.0 <= entry["ci_high"], score
        assert entry["ties"] == entry["n"] and entry["wins"] == entry["losses"] == 0 and entry["p_value"] == 1.0
    assert block["models"]["student"] == block["models"]["baseline"]


def test_teacher_maps_are_computed_once_and_shared(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    x = digits.test.inputs[:12]
    calls = []
    handle = teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        compare(teacher, student, x, method="saliency")
        alone = len(calls)
        calls.clear()
        cmp = compare(teacher, student, x, method="saliency", others={"baseline": (copy.deepcopy(student), x),
                                                                      "init": (_other_model(digits), x)})
    finally:
        handle.remove()
    assert len(calls) == alone  # the teacher is not explained again per further model
    assert set(cmp.others) == {"baseline", "init"}
    assert torch.equal(cmp.others["baseline"].maps, cmp.student_maps)
    assert torch.equal(cmp.others["baseline"].scores["spearman"], cmp.scores["spearman"])


def test_block_contract_with_references(cnn_pair, digits, tmp_path) -> None:
    teacher, student = cnn_pair
    others = {"baseline": _other_model(digits, 3), "teacher_reseed": build_model("cnn", digits.spec, width=8).eval(),
              "init": _other_model(digits, 5)}
    cfg = ExplainConfig(n_samples=24, sanity=False, steps=4)
    block = explain_stage(teacher, student, ExplainInputs.from_split(digits.test), ["gradcam", "saliency"], tmp_path,
                          config=cfg, others=others)
    m = block["methods"][0]
    assert list(m["models"]) == ["student", "baseline", "teacher_reseed", "init"]
    for entry in m["models"].values():
        assert set(entry) == {"agreement", "agreement_ci95", "agreement_std", "agreement_undefined", "same_prediction"}
    assert set(m["paired"]) == {"student_minus_baseline"}  # the references are scale points, not controls
    assert set(m["faithfulness"]) == {"teacher", "student", "baseline"}
    row = m["scale"]["spearman"]
    assert row["floor"] == pytest.approx(m["models"]["init"]["agreement"]["spearman"])
    assert row["ceiling"] == pytest.approx(m["models"]["teacher_reseed"]["agreement"]["spearman"])
    assert {"moved_towards", "moved_away"} <= set(m["galleries"])
    # the maps of every model are kept, and read back
    tensors = load_file(str(tmp_path / "explanations.safetensors"))
    cmp = Comparison.from_tensors("gradcam", tensors)
    assert set(cmp.others) == {"baseline", "teacher_reseed", "init"}
    assert cmp.others["init"].maps.shape == cmp.student_maps.shape
    for model in (teacher, student, *others.values()):
        assert_no_hooks(model)


def test_moved_galleries_order_by_the_gain_over_the_baseline() -> None:
    scores = {"spearman": torch.tensor([0.9, 0.1, 0.5, float("nan"), 0.4])}
    base = {"spearman": torch.tensor([0.2, 0.6, 0.5, 0.3, 0.1])}
    from distilens.explain.comparison import ModelMaps

    z = torch.zeros(5, 1, 2, 2)
    pred = torch.zeros(5, dtype=torch.long)
    cmp = Comparison("m", z, pred, pred, pred, z, z, scores, others={"baseline": ModelMaps(pred, z, base)})
    g = cmp.galleries(8)
    assert g["moved_towards"] == [0, 4]  # gains 0.7, 0.3; ties and NaN left out
    assert g["moved_away"] == [1]


def test_localization_covers_every_model() -> None:
    bundle = load_dataset("builtin:shapes", seed=0)
    torch.manual_seed(0)
    t, s, b = (build_model("cnn", bundle.spec, width=w).eval() for w in (4, 2, 2))
    _, block = explain_models(t, s, bundle.test, ["gradcam"], 8, sanity=False, steps=4, others={"baseline": b})
    assert set(block["localization"]) == {"teacher", "student", "baseline"}


def test_unknown_role_is_refused(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    with pytest.raises(ValueError, match="unknown roles"):
        explain_models(teacher, student, digits.test, ["saliency"], 4, sanity=False, others={"friend": student})


def test_scale_by_hand() -> None:
    models = {"student": {"agreement": {"spearman": 0.6}}, "baseline": {"agreement": {"spearman": 0.5}},
              "teacher_reseed": {"agreement": {"spearman": 0.7}}, "init": {"agreement": {"spearman": 0.1}}}
    row = agreement_scale(models)["spearman"]
    assert row["gap_closed"] == pytest.approx(0.5)
    assert row["position_student"] == pytest.approx(0.5 / 0.6) and row["position_baseline"] == pytest.approx(0.4 / 0.6)
    models["baseline"]["agreement"]["spearman"] = 0.75  # above the ceiling: no gap to close
    assert agreement_scale(models)["spearman"]["gap_closed"] is None
    assert agreement_scale({"student": models["student"], "baseline": models["baseline"]}) == {}


def test_paired_differences_leave_out_undefined_samples() -> None:
    from distilens.explain.comparison import ModelMaps

    z = torch.zeros(4, 3)
    pred = torch.zeros(4, dtype=torch.long)
    cmp = Comparison("m", z, pred, pred, pred, z, z, {"spearman": torch.tensor([0.5, math.nan, 0.7, 0.9])},
                     others={"baseline": ModelMaps(pred, z, {"spearman": torch.tensor([0.4, 0.2, math.nan, 0.8])})})
    d = paired_differences(cmp)["student_minus_baseline"]["spearman"]
    assert d["n"] == 2 and d["n_nan"] == 2 and d["mean"] == pytest.approx(0.1)


def test_a_run_writes_the_control_and_the_paired_numbers(finished_runs) -> None:
    """Through the pipeline: the label-only baseline explained against the same teacher maps, paired per sample."""
    metrics = json.loads((finished_runs.get("digits").path / "metrics.json").read_text())
    assert {"majority", "linear"} <= set(metrics["simple_models"])
    assert set(metrics["fidelity"]["student_minus_baseline"]) == {"accuracy", "agreement", "predictive_kl"}
    for m in metrics["explanations"]["methods"]:
        assert {"student", "baseline"} <= set(m["models"])
        assert m["agreement"] == m["models"]["student"]["agreement"]  # today's keys still read the student
        paired = m["paired"]["student_minus_baseline"]["spearman"]
        assert paired["ci_low"] <= paired["mean"] <= paired["ci_high"] and paired["n"] > 0


def test_explaining_a_run_again_keeps_its_control(finished_runs, tmp_path) -> None:
    from distilens.commands import explain_run

    run = finished_runs.copy("digits", tmp_path / "again")
    block = explain_run(run.path, methods=["saliency"], n_samples=8)
    assert {"student", "baseline"} <= set(block["methods"][0]["models"])
    assert "student_minus_baseline" in block["methods"][0]["paired"]


def test_an_explanation_guided_run_is_judged_against_plain_kd(tmp_path) -> None:
    """gradcam_align in the losses: a plain-KD student trains as well, and every comparison has it."""
    from e2e import invoke

    r = invoke("run", "-q", "--set", "teacher.args.width=4", "--set", "teacher.train.epochs=1", "--set", "student.args.width=2",
               "--set", "distill.epochs=1", "--set", "distill.losses=[{name: kd}, {name: gradcam_align}]",
               "--set", "explain.n_samples=8", "--set", "explain.sanity=false", "--set", "explain.methods=[gradcam]",
               "--set", "runtime.threads=1", "--out", str(tmp_path / "g"), cwd=tmp_path)
    assert r.code == 0, r.stderr
    m = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert {"accuracy", "agreement", "predictive_kl"} <= set(m["plain_kd"])
    assert {"student_minus_baseline", "student_minus_plain_kd"} <= set(m["fidelity"])
    block = m["explanations"]["methods"][0]
    assert {"student", "baseline", "plain_kd"} <= set(block["models"])
    assert {"student_minus_baseline", "student_minus_plain_kd"} == set(block["paired"])
    assert (tmp_path / "g" / "plain_kd.safetensors").is_file() and "plain_kd" in m["timing_s"]
