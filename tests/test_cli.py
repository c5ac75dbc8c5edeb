"""The `distilens` command end to end, in subprocesses, on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = """\
name: tiny
teacher:
  args: {width: 8}
  train: {epochs: 2}
student:
  args: {width: 4}
distill:
  epochs: 2
explain:
  n_samples: 16
  sanity_samples: 4
"""

CONTRACT_FILES = [
    "config.yaml", "teacher.safetensors", "teacher.json", "student.safetensors", "student.json",
    "history.csv", "metrics.json", "report.html", "predictions.safetensors", "explanations.safetensors",
]


def distilens(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "distilens", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("cli")
    (work / "tiny.yaml").write_text(TINY)
    proc = distilens("run", "tiny.yaml", "--quiet", cwd=work)
    return work, proc


def test_run_writes_the_contract(tiny_run) -> None:
    work, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    run = work / "runs" / "tiny"
    for name in CONTRACT_FILES:
        assert (run / name).is_file(), name
    assert list((run / "cache").glob("softlabels-*.safetensors"))
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["dataset"]) >= {"name", "num_classes", "n_train", "n_val", "n_test"}
    for role in ("teacher", "student", "baseline"):
        assert set(m[role]) >= {"accuracy", "params", "size_bytes", "flops", "latency_ms"}
        assert set(m[role]["latency_ms"]) == {"batch1", "batch64"}
    for role in ("student", "baseline"):
        assert set(m[role]) >= {"agreement", "predictive_kl", "ece"}
    assert set(m["compression"]) >= {"params_ratio", "flops_ratio", "speedup_batch1"}
    e = m["explanations"]
    assert e["method"] == "gradcam" and e["n_samples"] == 16
    assert set(e["agreement"]) >= {"spearman", "topk_iou", "cosine"}
    assert set(e["faithfulness"]["teacher"]) >= {"deletion_auc", "insertion_auc"}
    assert e["sanity"]["method"] == "gradcam" and e["sanity"]["teacher"]["layers"]
    assert [b["method"] for b in e["methods"]] == ["gradcam", "integrated_gradients"]
    assert set(m["timing_s"]) >= {"teacher", "cache", "distill", "baseline", "explain", "report", "total"}
    html = (run / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and html.count("data:image/png;base64,") >= 3
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("model,epoch") and len(history) == 1 + 2 + 2 + 2
    assert "report:" in proc.stdout and "teacher" in proc.stdout
    assert not list((work / "runs").glob(".*")), "no staging folder is left behind"


def test_existing_run_folder_is_kept_without_overwrite(tiny_run) -> None:
    work, _ = tiny_run
    run = work / "runs" / "tiny"
    before = snapshot(run)
    proc = distilens("run", "tiny.yaml", "--quiet", cwd=work)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert snapshot(run) == before


def test_overwrite_reuses_the_soft_label_cache_and_is_deterministic(tiny_run) -> None:
    work, _ = tiny_run
    run = work / "runs" / "tiny"
    before = snapshot(run)
    proc = distilens("run", "tiny.yaml", "--overwrite", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "read from cache" in proc.stderr
    after = snapshot(run)
    # Same config, same seed: bit-identical weights and soft labels.
    for name in ("teacher.safetensors", "student.safetensors", "baseline.safetensors"):
        assert after[name] == before[name], name
    assert [k for k in after if k.startswith("cache/")] == [k for k in before if k.startswith("cache/")]


@pytest.mark.parametrize(
    "config, args, message",
    [
        ("distill:\n  epoch: 3\n", [], "unknown key 'distill.epoch' (did you mean 'epochs'?)"),
        ("distill:\n  epochs: many\n", [], "'distill.epochs': Input should be a valid integer"),
        ("data:\n  source: builtin:mnist\n", [], "unknown dataset 'mnist'"),
        ("student:\n  arch: cnnn\n", [], "unknown model 'cnnn' (did you mean 'cnn'?)"),
        ("distill:\n  losses: [{name: kld}]\n", [], "unknown loss 'kld' (did you mean 'kd'?)"),
        ("explain:\n  methods: [gradcamm]\n", [], "unknown explainer 'gradcamm' (did you mean 'gradcam'?)"),
        ("teacher:\n  weights: missing.safetensors\n", [], "does not exist"),
        ("", ["--set", ""], "expected KEY=VALUE"),
        ("data: [oops\n", [], "YAML syntax error at line 2"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, config: str, args: list[str], message: str) -> None:
    (tmp_path / "c.yaml").write_text(config)
    proc = distilens("run", "c.yaml", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_config_file(tmp_path) -> None:
    proc = distilens("run", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_list_and_help(tmp_path) -> None:
    for what, name in (("datasets", "digits"), ("models", "cnn"), ("losses", "kd"), ("explainers", "gradcam")):
        proc = distilens("list", what, cwd=tmp_path)
        assert proc.returncode == 0 and name in proc.stdout
    for cmd in ([], ["run"], ["list"]):
        proc = distilens(*cmd, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout
    assert distilens("list", "things", cwd=tmp_path).returncode == 2


def test_resume_reuses_finished_stages_and_refuses_a_changed_config(tiny_run) -> None:
    work, _ = tiny_run
    run = work / "runs" / "tiny"
    before = snapshot(run)
    proc = distilens("run", "tiny.yaml", "--resume", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    after = snapshot(run)
    for name in ("teacher.safetensors", "student.safetensors", "baseline.safetensors", "history.csv"):
        assert after[name] == before[name], name
    proc = distilens("run", "tiny.yaml", "--resume", "--set", "distill.epochs=3", cwd=work)
    assert proc.returncode == 2 and "config differs" in proc.stderr
    assert snapshot(run) == after


def test_report_and_explain_rebuild_from_the_run_folder(tiny_run) -> None:
    work, _ = tiny_run
    run = work / "runs" / "tiny"
    (run / "report.html").unlink()
    proc = distilens("report", "runs/tiny", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file() and "report:" in proc.stdout
    weights = {n: (run / n).read_bytes() for n in ("teacher.safetensors", "student.safetensors")}
    proc = distilens("explain", "runs/tiny", "--method", "saliency", "--n", "8", cwd=work)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["explanations"]["method"] == "saliency" and m["explanations"]["n_samples"] == 8
    assert m["student"]["accuracy"] > 0  # the rest of metrics.json is kept
    assert all((run / n).read_bytes() == b for n, b in weights.items())
    bad = distilens("explain", "runs/tiny", "--method", "gradcamm", cwd=work)
    assert bad.returncode == 2 and "did you mean 'gradcam'" in bad.stderr
    assert distilens("report", "runs/nope", cwd=work).returncode == 2
