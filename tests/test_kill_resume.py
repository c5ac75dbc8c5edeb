"""A run killed with SIGKILL in the middle of distillation resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ARGS = ["--quiet", "--set", "teacher.args.width=8", "--set", "teacher.train.epochs=2", "--set", "student.args.width=4",
        "--set", "distill.epochs=40", "--set", "distill.baseline=false", "--set", "explain.n_samples=8",
        "--set", "explain.sanity=false", "--set", "runtime.threads=1"]


def _start(cwd: Path, out: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "distilens", "run", "--out", out, *ARGS, *extra], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_during_distillation_then_resume_gives_identical_weights(tmp_path) -> None:
    reference = _start(tmp_path, "runs/straight")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()

    victim = _start(tmp_path, "runs/killed")
    checkpoint = tmp_path / "runs" / ".killed.partial" / "checkpoints" / "student.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more epochs, so the kill lands at a random point of distillation
    assert victim.poll() is None, "the run ended before it could be killed; raise distill.epochs"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert not (tmp_path / "runs" / "killed").exists()

    resumed = _start(tmp_path, "runs/killed", "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a = load_file(str(tmp_path / "runs" / "straight" / "student.safetensors"))
    b = load_file(str(tmp_path / "runs" / "killed" / "student.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), "resumed weights differ"
    ma, mb = (json.loads((tmp_path / "runs" / r / "metrics.json").read_text()) for r in ("straight", "killed"))
    for key in ("accuracy", "agreement", "predictive_kl", "ece"):
        assert ma["student"][key] == mb["student"][key], key
    assert not (tmp_path / "runs" / ".killed.partial").exists()
