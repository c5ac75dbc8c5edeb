"""The `distilens` command end to end: the run-folder contract of every kind of run, and the
commands that read a finished run (report, explain, export, resume, --overwrite, list).

The runs are made once per session (conftest.py ``finished_runs``) and the commands run in
this process; the console script itself runs in a real process once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import RECIPES, FinishedRun, FinishedRuns

CONTRACT_FILES = [
    "config.yaml", "teacher.safetensors", "teacher.json", "student.safetensors", "student.json",
    "history.csv", "metrics.json", "report.html", "predictions.safetensors", "explanations.safetensors",
]
# The files every run writes, whatever its data and teacher (text runs keep their word-level
# explanations in explanations/ instead of explanations.safetensors).
COMMON_FILES = ["config.yaml", "teacher.safetensors", "teacher.json", "student.safetensors", "student.json",
                "history.csv", "metrics.json", "report.html", "predictions.safetensors"]


def distilens(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m distilens ARGS`` in a real process (~3.4 s of start-up): only where the process is the point."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "distilens", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", list(RECIPES))
def test_every_kind_of_run_writes_the_common_contract(finished_runs: FinishedRuns, kind: str) -> None:
    run = finished_runs.get(kind)
    for name in COMMON_FILES:
        assert (run.path / name).is_file(), name
    m = json.loads((run.path / "metrics.json").read_text())
    assert set(m["dataset"]) >= {"name", "num_classes", "n_train", "n_val", "n_test"}
    roles = ("teacher", "student", "baseline") if "baseline" in m else ("teacher", "student")
    for role in roles:
        assert set(m[role]) >= {"accuracy", "params", "size_bytes", "flops", "latency_ms"}, role
        assert set(m[role]["latency_ms"]) == {"batch1", "batch64"}
    for role in roles[1:]:
        assert set(m[role]) >= {"agreement", "predictive_kl", "ece"}, role
    assert set(m["compression"]) >= {"params_ratio", "flops_ratio", "speedup_batch1"}
    assert m["explanations"]["methods"] and m["explanations"]["n_samples"] > 0
    html = (run.path / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script src=" not in html
    assert "report:" in run.result.stdout and "teacher" in run.result.stdout
    assert (run.path / "history.csv").read_text().startswith("model,epoch")
    parent = run.path.parent
    assert not list(parent.glob(".*")), "no staging folder is left behind"


def test_run_writes_the_contract(tiny_run: FinishedRun) -> None:
    run = tiny_run.path
    for name in CONTRACT_FILES:
        assert (run / name).is_file(), name
    assert list((run / "cache").glob("softlabels-*.safetensors"))
    m = json.loads((run / "metrics.json").read_text())
    assert "baseline" in m  # the keys of each role: test_every_kind_of_run_writes_the_common_contract
    e = m["explanations"]
    assert e["method"] == "gradcam" and e["n_samples"] == 16
    assert set(e["agreement"]) >= {"spearman", "topk_iou", "cosine"}
    assert set(e["faithfulness"]["teacher"]) >= {"deletion_auc", "insertion_auc"}
    assert e["sanity"]["method"] == "gradcam" and e["sanity"]["teacher"]["layers"]
    assert [b["method"] for b in e["methods"]] == ["gradcam", "integrated_gradients"]
    assert set(m["timing_s"]) >= {"teacher", "cache", "distill", "baseline", "explain", "report", "total"}
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("model,epoch") and len(history) == 1 + 2 + 2 + 2


@pytest.mark.slow  # a second full run (~12 s)
def test_overwrite_reuses_the_soft_label_cache_and_is_deterministic(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    work = finished_runs.copy("digits", tmp_path)
    before = snapshot(work.path)
    result = cli("run", "tiny.yaml", "--overwrite", cwd=work.work)
    assert result.code == 0, result.stderr
    assert "read from cache" in result.stderr
    after = snapshot(work.path)
    # Same config, same seed: bit-identical weights and soft labels, though this process has
    # made other runs since (each run seeds everything it uses).
    for name in ("teacher.safetensors", "student.safetensors", "baseline.safetensors"):
        assert after[name] == before[name], name
    assert [k for k in after if k.startswith("cache/")] == [k for k in before if k.startswith("cache/")]


def test_resume_of_a_finished_run_keeps_its_weights(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    # A changed config on --resume is refused: test_bad_input.py, "resume-changed-config".
    work = finished_runs.copy("digits", tmp_path)
    before = snapshot(work.path)
    result = cli("run", "tiny.yaml", "--resume", "--quiet", cwd=work.work)
    assert result.code == 0, result.stderr
    after = snapshot(work.path)
    for name in ("teacher.safetensors", "student.safetensors", "baseline.safetensors", "history.csv"):
        assert after[name] == before[name], name


def test_report_rebuilds_from_the_run_folder(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    work = finished_runs.copy("digits", tmp_path)
    (work.path / "report.html").unlink()
    result = cli("report", "runs/tiny", cwd=work.work)
    assert result.code == 0, result.stderr
    assert (work.path / "report.html").is_file() and "report:" in result.stdout
    assert cli("report", "runs/nope", cwd=work.work).code == 2


def test_explain_rewrites_the_explanations_and_keeps_the_rest(finished_runs: FinishedRuns, cli, tmp_path) -> None:
    work = finished_runs.copy("digits", tmp_path)
    run = work.path
    weights = {n: (run / n).read_bytes() for n in ("teacher.safetensors", "student.safetensors")}
    result = cli("explain", "runs/tiny", "--method", "saliency", "--n", "8", cwd=work.work)
    assert result.code == 0, result.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["explanations"]["method"] == "saliency" and m["explanations"]["n_samples"] == 8
    assert m["student"]["accuracy"] > 0  # the rest of metrics.json is kept
    assert all((run / n).read_bytes() == b for n, b in weights.items())
    bad = cli("explain", "runs/tiny", "--method", "gradcamm", cwd=work.work)
    assert bad.code == 2 and "did you mean 'gradcam'" in bad.stderr


def test_export_to_another_folder_leaves_the_run_alone(tiny_run: FinishedRun, cli, tmp_path) -> None:
    before = snapshot(tiny_run.path)
    result = cli("export", str(tiny_run.path), "--format", "torchscript", "--out", str(tmp_path / "s.pt"))
    assert result.code == 0, result.stderr
    assert "max_abs_diff" in result.stdout and (tmp_path / "s.pt").is_file()
    assert snapshot(tiny_run.path) == before


# The same mistakes spelled in the config file; test_bad_input.py holds the catalogue (as --set).
@pytest.mark.parametrize(
    "config, message",
    [
        ("data:\n  source: builtin:mnist\n", "unknown dataset 'mnist'"),
        ("student:\n  arch: cnnn\n", "unknown model 'cnnn' (did you mean 'cnn'?)"),
        ("distill:\n  losses: [{name: kld}]\n", "unknown loss 'kld' (did you mean 'kd'?)"),
        ("explain:\n  methods: [gradcamm]\n", "unknown explainer 'gradcamm' (did you mean 'gradcam'?)"),
        ("teacher:\n  weights: missing.safetensors\n", "does not exist"),
    ],
)
def test_bad_input_in_the_config_file_exits_2_with_one_line(cli, tmp_path, config: str, message: str) -> None:
    (tmp_path / "c.yaml").write_text(config)
    result = cli("run", "c.yaml")
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_list_and_help(cli) -> None:
    for what, name in (("datasets", "digits"), ("models", "cnn"), ("losses", "kd"), ("explainers", "gradcam")):
        result = cli("list", what)
        assert result.code == 0 and name in result.stdout
    for cmd in ([], ["run"], ["list"]):
        result = cli(*cmd, "--help")
        assert result.code == 0 and "Usage" in result.stdout


def test_the_console_script_in_a_real_process(tmp_path) -> None:
    script = Path(sys.executable).with_name("distilens")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "distilens"]
    done = subprocess.run([*command, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Usage" in done.stdout
    bad = distilens("list", "things", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
