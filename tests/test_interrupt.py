"""Ctrl-C (SIGINT): training stops after the epoch's checkpoint, says how to resume, exits 130,
and ``--resume`` ends with the weights of an uninterrupted run; a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distilens.cli import _interrupted_message
from distilens.distill.checkpoint import load_checkpoint
from distilens.interrupt import Interrupted, check_interrupt, deferred_interrupts, interrupt_requested

ARGS = ["--quiet", "--set", "teacher.args.width=8", "--set", "teacher.train.epochs=1", "--set", "student.args.width=4",
        "--set", "distill.epochs=12", "--set", "distill.baseline=false", "--set", "explain.methods=[saliency]",
        "--set", "explain.n_samples=8", "--set", "explain.sanity=false", "--set", "runtime.threads=1"]


def test_first_ctrl_c_waits_for_the_epoch_boundary_second_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        with deferred_interrupts():
            check_interrupt("student", 1, 5)  # nothing pending: training goes on
            signal.raise_signal(signal.SIGINT)  # first Ctrl-C: only a flag
            assert interrupt_requested()
            check_interrupt("student", 2, 5)
    assert (info.value.role, info.value.epoch, info.value.epochs) == ("student", 2, 5)
    assert signal.getsignal(signal.SIGINT) is before and not interrupt_requested()

    with pytest.raises(KeyboardInterrupt) as info2:
        with deferred_interrupts():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the second one raises here, mid-epoch
            pytest.fail("the second Ctrl-C must stop at once")
    assert not isinstance(info2.value, Interrupted)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_pending_ctrl_c_after_the_last_epoch_stops_before_the_next_stage() -> None:
    # Python's own handler first: the block must hand Ctrl-C back to whatever was there, and
    # this process may have inherited another one (a full CI run once left it changed here).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted) as info:
            with deferred_interrupts():
                signal.raise_signal(signal.SIGINT)
        assert info.value.role is None
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):  # outside the block: Python's usual Ctrl-C
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, outer)


def test_the_resume_command_is_the_same_command_with_resume() -> None:
    msg = _interrupted_message(Interrupted("student", 3, 30), ["run", "my run.yaml", "--overwrite", "--set", "a=1"])
    assert msg == "interrupted after epoch 3 of 30 of student; resume with: distilens run 'my run.yaml' --set a=1 --resume"
    assert _interrupted_message(KeyboardInterrupt(), ["run", "--resume"]).endswith("resume with: distilens run --resume")
    assert _interrupted_message(KeyboardInterrupt(), ["explain", "runs/x"]) == "interrupted; run the same command again"


def _start(cwd: Path, out: str, *extra: str, warn: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "default" if warn else "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "distilens", "run", "--out", out, *ARGS, *extra], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted; raise distill.epochs"


@pytest.mark.slow
def test_ctrl_c_during_distillation_then_resume_gives_identical_weights(tmp_path) -> None:
    """Also: a copy of the stopped run whose checkpoint is then cut in half resumes from the one before."""
    victim = _start(tmp_path, "runs/stopped")
    staging = tmp_path / "runs" / ".stopped.partial"
    _wait_for(staging / "checkpoints" / "student.prev.pt", victim)  # two epochs written
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"interrupted after epoch (\d+) of 12 of student; resume with: distilens run --out runs/stopped .* --resume",
                     last)
    assert m, err
    assert load_checkpoint(staging / "checkpoints" / "student.pt")["epoch"] == int(m.group(1)) < 12
    assert not (tmp_path / "runs" / "stopped").exists() and staging.is_dir()

    cut_staging = tmp_path / "runs" / ".cut.partial"
    shutil.copytree(staging, cut_staging)
    checkpoint = cut_staging / "checkpoints" / "student.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])

    reference = _start(tmp_path, "runs/straight")
    resumed = _start(tmp_path, "runs/stopped", "--resume")
    cut = _start(tmp_path, "runs/cut", "--resume", warn=True)
    assert reference.wait(timeout=900) == 0, reference.stderr.read()
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()
    _, err = cut.communicate(timeout=900)
    assert cut.returncode == 0, err
    assert f"resuming from the previous one, 'student.prev.pt' (epoch {int(m.group(1)) - 1})" in err, err
    a = load_file(str(tmp_path / "runs" / "straight" / "student.safetensors"))
    for run in ("stopped", "cut"):
        b = load_file(str(tmp_path / "runs" / run / "student.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{run}: resumed weights differ"
    assert not staging.exists() and not cut_staging.exists()


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_keeps_the_checkpoint(tmp_path) -> None:
    # Batches of one: an epoch takes seconds, so both signals land inside the same epoch.
    victim = _start(tmp_path, "runs/twice", "--set", "distill.batch_size=1")
    checkpoint = tmp_path / "runs" / ".twice.partial" / "checkpoints" / "student.pt"
    _wait_for(checkpoint.with_name("student.pt.sha256"), victim)
    time.sleep(0.5)  # past the end of epoch 1: both signals land inside epoch 2
    victim.send_signal(signal.SIGINT)
    time.sleep(0.05)
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted; resume with: distilens run --out runs/twice")
    assert load_checkpoint(checkpoint)["epoch"] == 1
