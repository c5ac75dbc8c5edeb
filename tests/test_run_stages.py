"""The typed run: RunContext, stage results whose to_json() is metrics.json, predictions computed once,
the report drawn from the run's objects, and commands on a run folder using its saved preprocessing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from distilens.config import load_config
from distilens.errors import DataError
from distilens.pipeline import EvaluateResult, ExplainResult, Timings, run
from distilens.pipeline import evaluate as evaluate_stage_module
from distilens.report.inputs import Predictions, ReportInputs

#: metrics.json's top-level keys (README, DESIGN.md), in the order the run writes them.
CONTRACT_KEYS = ["dataset", "teacher", "student", "baseline", "compression", "seed", "explanations", "environment", "timing_s",
                 "latency"]
TINY = ["teacher.arch=mlp", "teacher.args={hidden: [16]}", "student.arch=mlp", "student.args={hidden: [4]}",
        "teacher.train.epochs=1", "distill.epochs=1", "explain.n_samples=8", "explain.sanity_samples=4",
        "runtime.threads=1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple:
    """One in-process run on digits with MLPs, counting the test-split forward passes of evaluate."""
    calls: list[int] = []
    real = evaluate_stage_module.predict_logits

    def counting(model, split, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(len(split))
        return real(model, split, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_stage_module, "predict_logits", counting)
        result = run(load_config(None, TINY), out=tmp_path_factory.mktemp("stages") / "run")
    return result, calls


def test_metrics_follow_the_contract_and_come_from_the_stage_results(tiny) -> None:
    result, _ = tiny
    m = result.metrics
    assert [k for k in m if k in CONTRACT_KEYS] == CONTRACT_KEYS  # in this order; more keys are welcome
    assert set(m) - set(CONTRACT_KEYS) == {"simple_models", "fidelity"}  # the evidence (issue 15)
    assert m == json.loads((result.path / "metrics.json").read_text())
    assert m["explanations"]["skipped"]["gradcam"]  # an MLP has no spatial layer: skipped with the reason
    assert set(m["timing_s"]) == {"data", "teacher", "cache", "distill", "baseline", "evaluate", "explain", "report", "total"}
    # each stage result's to_json() is its part of metrics.json, and reads back from it
    evaluation = EvaluateResult.from_json(m)
    assert evaluation.to_json() == {k: m[k] for k in ("teacher", "student", "baseline", "compression")}
    assert ExplainResult.from_json(m).to_json() == {"explanations": m["explanations"]}
    assert set(m["student"]) >= {"accuracy", "agreement", "predictive_kl", "ece", "params", "size_bytes", "flops", "latency_ms"}


def test_test_predictions_are_computed_once_per_model_and_reused(tiny) -> None:
    result, calls = tiny
    n_test = result.metrics["dataset"]["n_test"]
    assert calls == [n_test] * 3  # teacher, student, baseline: one pass each
    preds = Predictions.load(result.path / "predictions.safetensors")
    for role in ("teacher", "student", "baseline"):
        acc = float((preds.logits[role].argmax(1) == preds.targets).float().mean())
        assert acc == pytest.approx(result.metrics[role]["accuracy"])
    assert preds.train_teacher is not None and len(preds.train_teacher) == result.metrics["dataset"]["n_train"]


def test_report_inputs_read_back_from_the_folder_match_the_run(tiny) -> None:
    result, _ = tiny
    inputs = ReportInputs.from_folder(result.path)
    assert inputs.missing == [] and inputs.metrics == result.metrics
    assert inputs.config is not None and inputs.config.student.arch == "mlp"
    assert [c.method for c in inputs.explanations.comparisons] == ["integrated_gradients"]
    assert inputs.spec is not None and inputs.spec.kind == "image"
    assert inputs.student is None  # only drawn students (soft trees) are read back


def test_timings_add_up_per_stage() -> None:
    t = Timings()
    for _ in range(2):
        with t.timed("explain"):
            pass
    t.finish()
    assert set(t.to_json()) == {"explain", "total"} and t.seconds["explain"] <= t.seconds["total"]


def _table(path: Path, n: int = 60, shift: float = 0.0) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "colour", "y"])
        for i in range(n):
            w.writerow([i + shift, ["red", "blue"][i % 2], i % 2])
    return path


def test_commands_on_a_run_use_its_saved_preprocessing(tmp_path) -> None:
    from distilens.commands import explain_run, export_run, predict_run

    data = _table(tmp_path / "t.csv")
    cfg = load_config(None, [f"data.source=csv:{data}", "data.target=y", "distill.baseline=false",
                             "explain.methods=[saliency]", *TINY])
    result = run(cfg, out=tmp_path / "run")
    block = explain_run(result.path, n_samples=4)
    assert block["method"] == "saliency" and block["n_samples"] == 4
    assert export_run(result.path, format="torchscript")["max_abs_diff"] < 1e-4
    _table(data, shift=0.5)  # the data changed since the run: its fitted preprocessing no longer matches
    with pytest.raises(DataError, match="is no longer the .*run again"):
        explain_run(result.path)
    with pytest.raises(DataError, match="is no longer the .*run again"):
        export_run(result.path, format="torchscript")
    new = tmp_path / "new.csv"
    new.write_text("colour,x\nred,3\n")
    assert predict_run(result.path, new).splitlines()[1].startswith("new.csv:row 2,")  # predict reads the saved file


def test_report_of_a_run_is_drawn_without_reading_the_student_back(tiny, monkeypatch) -> None:
    import distilens.report.inputs as inputs_module

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the report read a model back")

    monkeypatch.setattr(inputs_module, "load_model", refuse)
    result, _ = tiny
    from distilens.commands import report_run

    assert report_run(result.path).is_file()


def _texts(path: Path, n: int = 80) -> Path:
    good, bad = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "dull"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            words = (good if i % 2 else bad)[i % 4 :] + ["film", "plot", str(i % 5)]
            w.writerow([" ".join(words), "pos" if i % 2 else "neg"])
    return path


def test_text_runs_start_students_from_the_teacher_table_and_use_the_transfer_recipe(tmp_path) -> None:
    data = _texts(tmp_path / "t.csv")
    cfg = load_config(None, [f"data.source=csv:{data}", "data.text=text", "data.target=label", "data.max_length=8",
                             "teacher.arch=embedding_bag", "teacher.args={dim: 8}", "student.arch=embedding_bag",
                             "student.args={dim: 4}", "student.init=teacher_embeddings", "distill.transfer_copies=1",
                             "distill.transfer.method=tang", "teacher.train.epochs=1", "distill.epochs=1",
                             "explain.n_samples=4", "explain.sanity=false", "runtime.threads=1"])
    m = run(cfg, out=tmp_path / "run").metrics
    assert m["student_init"]["source"] == "teacher_rows" and m["student_init"]["dim"] == 4
    assert m["dataset"]["transfer_copies"] > 0
    assert list(m)[:7] == ["dataset", "teacher", "student", "baseline", "compression", "reference", "student_init"]


def test_teacher_embeddings_need_token_models_and_fail_before_any_file(tmp_path) -> None:
    from distilens.errors import ConfigError

    cfg = load_config(None, [*TINY, "student.init=teacher_embeddings"])
    with pytest.raises(ConfigError, match="student.init: teacher_embeddings needs a text student"):
        run(cfg, out=tmp_path / "run")
    assert not any(tmp_path.iterdir())
