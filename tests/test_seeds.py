"""run --seeds: parsing, the folder of seeds, the aggregate over seeds (fast); end to end with resume (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distilens.errors import ConfigError, RunFolderError
from distilens.seeds import _check_root, parse_seeds
from distilens.summary import aggregate, spread, t_interval


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2,5", [0, 2, 5]), ("7,0-2,2", [0, 1, 2, 7]),
                                         (" 1 - 2 ", [1, 2])])
def test_parse_seeds(text, seeds) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, match", [("a", "not a seed"), ("4-2", "backwards; write 2-4"), ("0-5000", "more than"),
                                         ("1,,2", "not a seed"), ("-1", "not a seed")])
def test_bad_seeds_are_one_line(text, match) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_seeds(text)


def test_the_folder_of_seeds_holds_nothing_else(tmp_path) -> None:
    _check_root(tmp_path / "new", resume=False, overwrite=False)
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(RunFolderError, match="pass --resume"):
        _check_root(tmp_path, resume=False, overwrite=False)
    _check_root(tmp_path, resume=True, overwrite=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a folder of seeds.*notes.txt"):
        _check_root(tmp_path, resume=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _run_metrics(student: float, baseline: float, rho_s: float, rho_b: float) -> dict:
    block = {"method": "gradcam", "n_samples": 16, "agreement": {"spearman": rho_s},
             "models": {"student": {"agreement": {"spearman": rho_s}}, "baseline": {"agreement": {"spearman": rho_b}},
                        "init": {"agreement": {"spearman": 0.1}}}}
    return {"dataset": {"name": "digits"}, "teacher": {"accuracy": 0.99}, "student": {"accuracy": student, "agreement": 0.98},
            "baseline": {"accuracy": baseline, "agreement": 0.97}, "simple_models": {"majority": {"accuracy": 0.1}},
            "explanations": {"methods": [block]}, "timing_s": {"total": 10.0}}


def test_aggregate_means_and_pairs_by_seed() -> None:
    runs = {0: _run_metrics(0.99, 0.98, 0.6, 0.5), 1: _run_metrics(0.98, 0.98, 0.7, 0.5), 2: _run_metrics(0.97, 0.99, 0.5, 0.55)}
    s = aggregate(runs)
    assert s["seeds"] == [0, 1, 2] and s["dataset"] == "digits"
    acc = s["models"]["student"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.98) and acc["sd"] == pytest.approx(0.01) and acc["values"] == [0.99, 0.98, 0.97]
    d = s["paired"]["student_minus_baseline"]["accuracy"]
    assert d["mean"] == pytest.approx(-0.01 / 3) and (d["wins"], d["ties"], d["losses"]) == (1, 1, 1)
    assert d["t_ci_low"] < d["mean"] < d["t_ci_high"]
    g = s["explanations"]["gradcam"]
    assert g["models"]["student"]["agreement"]["spearman"] == pytest.approx(0.6)
    assert g["spread"]["baseline"]["spearman"]["values"] == [0.5, 0.5, 0.55]
    assert g["paired"]["student_minus_baseline"]["spearman"]["mean"] == pytest.approx((0.1 + 0.2 - 0.05) / 3)
    assert g["scale"]["spearman"]["floor"] == pytest.approx(0.1) and g["scale"]["spearman"]["ceiling"] is None
    assert "ece" not in s["paired"]["student_minus_baseline"]


def test_spread_and_t_interval_by_hand() -> None:
    assert spread([1.0, None, 3.0]) == {"mean": 2.0, "sd": pytest.approx(2 ** 0.5), "n": 2, "values": [1.0, None, 3.0]}
    assert spread([0.5])["sd"] is None
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert lo == pytest.approx(2 - 4.302653 / 3 ** 0.5) and hi == pytest.approx(2 + 4.302653 / 3 ** 0.5)
    assert t_interval([1.0]) == (None, None)


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distilens", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, match", [(["--jobs", "2"], "--jobs goes with --seeds"), (["--same-teacher"], "--same-teacher goes"),
                                         (["--seeds", "x"], "--seeds 'x'")])
def test_seed_options_misused_are_one_line(tmp_path, args, match) -> None:
    r = _cli("run", *args, "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


TINY = ["--set", "teacher.args.width=4", "--set", "teacher.train.epochs=1", "--set", "student.args.width=2",
        "--set", "distill.epochs=1", "--set", "explain.n_samples=8", "--set", "explain.sanity=false",
        "--set", "explain.methods=[saliency]", "--set", "explain.steps=2", "--set", "runtime.threads=1", "-q"]


@pytest.mark.slow
def test_seeds_end_to_end_with_parallel_jobs_a_shared_teacher_and_resume(tmp_path) -> None:
    out = tmp_path / "five"
    r = _cli("run", *TINY, "--set", "explain.references=[teacher_reseed, init]", "--seeds", "0-1", "--jobs", "2",
             "--same-teacher", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["same_teacher"] is True
    assert set(summary["paired"]["student_minus_baseline"]) == {"accuracy", "agreement", "predictive_kl"}
    assert set(summary["explanations"]["saliency"]["models"]) == {"student", "baseline", "teacher_reseed", "init"}
    # the second seed loaded the first seed's teacher and kept its split
    cfg1 = (out / "seed-1" / "config.yaml").read_text()
    assert "seed-0/teacher.safetensors" in cfg1 and "split_seed: 0" in cfg1
    t0 = json.loads((out / "seed-0" / "metrics.json").read_text())["teacher"]["accuracy"]
    assert json.loads((out / "seed-1" / "metrics.json").read_text())["teacher"]["accuracy"] == t0
    html = (out / "summary.html").read_text()
    assert "Verdict over seeds" in html and 'href="seed-1/report.html"' in html and "http" not in html.replace("http-equiv", "")
    assert r.stdout.strip().splitlines()[-1].split(" ", 1)[0] in ("✗", "!", "✓", "–")  # the verdict comes last
    # resume: the finished seeds are read back, a new one runs
    r = _cli("run", *TINY, "--set", "explain.references=[teacher_reseed, init]", "--seeds", "0-2", "--same-teacher",
             "--out", str(out), "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["timing_s"]["reused"] == [0, 1]
    assert "seed 0:" in r.stdout and "(read back)" in r.stdout
    # without --resume or --overwrite an existing folder of seeds is refused
    r = _cli("run", *TINY, "--seeds", "0", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "pass --resume" in r.stderr


def test_a_seed_process_that_dies_without_a_result_is_an_error_not_a_hang() -> None:
    """--jobs N: a child killed (or out of memory) before it reports is reported, not waited for."""
    from queue import Queue

    from distilens.seeds import _next_report

    class Dead:
        exitcode = -9

    class Alive:
        exitcode = None

    queue: Queue = Queue()
    seed, status, message = _next_report(queue, {3: Alive(), 4: Dead()})
    assert (seed, status) == (4, "error") and "exit code -9" in message
    queue.put((3, "ok", "runs/x/seed-3"))
    assert _next_report(queue, {3: Alive()}) == (3, "ok", "runs/x/seed-3")


@pytest.mark.parametrize("sets, match", [
    (["teacher.arch=minilm", "teacher.args={finetune: head}"], "same teacher again"),
    (["teacher.arch=minilm", "teacher.args={finetune: all}", "data.tokenizer=word"], "cannot be matched to words"),
])
def test_a_second_teacher_that_would_not_be_one_is_refused(sets, match) -> None:
    from distilens.config import load_config
    from distilens.controls import check_references

    base = ["data.source=csv:reviews.csv", "data.text=text", "data.target=label", "explain.references=[teacher_reseed]"]
    with pytest.raises(ConfigError, match=match):
        check_references(load_config(None, [*base, *sets]))
