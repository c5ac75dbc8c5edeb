"""Bring your own data and teacher: the CLI end to end on a CSV table and an image folder it has
never seen, with the user's own teacher as a state dict (distilled into a soft decision tree)
and as a TorchScript archive.

The runs are conftest.py's ``finished_runs`` ("table", "imagefolder", "own_teacher",
"torchscript_teacher"); the common run-folder contract is checked for each in test_cli.py.
Mistakes with these inputs (a missing target column, a pickled teacher) are rows of the
catalogue in test_bad_input.py.
"""

from __future__ import annotations

import json

from e2e import FAST  # noqa: F401 - test_imagefolder_lazy.py imports it from here
from e2e import FinishedRuns, digits_cnn, write_loans, write_state_dict_teacher, write_torchscript_teacher


def test_csv_table_run(finished_runs: FinishedRuns) -> None:
    run = finished_runs.get("table").path
    m = json.loads((run / "metrics.json").read_text())
    assert m["dataset"]["num_classes"] == 2 and m["teacher"]["accuracy"] > 0.7
    assert m["explanations"]["method"] == "integrated_gradients"  # gradcam does not apply to tables
    assert (run / "preprocessing.json").is_file()
    assert "per-row attributions" in (run / "report.html").read_text()


def test_csv_table_predict(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    run = finished_runs.get("table").path
    write_loans(tmp_path / "new.csv", n=7, with_target=False)
    result = cli("predict", str(run), "new.csv")
    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "source,class,probability" and len(lines) == 8
    result = cli("predict", str(run), "new.csv", "--explain", "--out", "p.csv")
    assert result.code == 0, result.stderr
    assert "attribution:income" in (tmp_path / "p.csv").read_text().splitlines()[0]


def test_csv_table_export(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    work = finished_runs.copy("table", tmp_path)
    result = cli("export", "runs/loans", "--format", "torchscript", cwd=work.work)
    assert result.code == 0, result.stderr
    assert "max_abs_diff" in result.stdout and (work.path / "student.pt").is_file()


def test_image_folder_run_with_odd_names_and_mixed_modes(finished_runs: FinishedRuns, cli) -> None:
    run = finished_runs.get("imagefolder")
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["dataset"]["num_classes"] == 3 and m["explanations"]["method"] == "gradcam"
    result = cli("predict", str(run.path), str(run.work / "photos" / "ñandú"))
    assert result.code == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 25


def test_own_teacher_as_a_state_dict(finished_runs: FinishedRuns) -> None:
    run = finished_runs.get("own_teacher").path
    m = json.loads((run / "metrics.json").read_text())
    assert m["teacher"]["params"] == sum(p.numel() for p in digits_cnn().parameters())
    assert "teacher" not in (run / "history.csv").read_text().split("\n", 1)[1]  # not trained


def test_own_teacher_state_dict_for_another_width_is_refused(cli, tmp_path) -> None:
    write_state_dict_teacher(tmp_path / "mine.pt")  # width 8
    result = cli("run", "--set", "teacher.weights=mine.pt", "--set", "teacher.args.width=16")
    assert result.code == 2 and "do not fit" in result.stderr


def test_soft_tree_student(finished_runs: FinishedRuns) -> None:
    run = finished_runs.get("own_teacher").path
    m = json.loads((run / "metrics.json").read_text())
    assert m["student"]["params"] < m["teacher"]["params"]
    assert "gradcam" not in [b["method"] for b in m["explanations"]["methods"]]  # no spatial layer
    html = (run / "report.html").read_text()
    assert "soft decision tree: node filters and leaves" in html and "→" in html  # the tree and decision paths


def test_torchscript_teacher_needs_trust(cli, tmp_path) -> None:
    write_torchscript_teacher(tmp_path / "scripted.pt")
    result = cli("run", "--set", "teacher.weights=scripted.pt")
    assert result.code == 2 and "trust_torchscript" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_torchscript_teacher_run_can_be_explained_again(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    run = finished_runs.get("torchscript_teacher").path
    assert (run / "teacher.torchscript").is_file()
    m = json.loads((run / "metrics.json").read_text())
    assert "gradcam" in m["explanations"]["skipped"]  # TorchScript takes no hooks
    work = finished_runs.copy("torchscript_teacher", tmp_path)
    result = cli("explain", "runs/ts", "--method", "saliency", "--n", "4", cwd=work.work)  # the folder cannot trust itself
    assert result.code == 2 and "--trust-torchscript" in result.stderr, result.stderr
    result = cli("explain", "runs/ts", "--method", "saliency", "--n", "4", "--trust-torchscript", cwd=work.work)
    assert result.code == 0, result.stderr
