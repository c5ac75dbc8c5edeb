"""The size and time-per-epoch line printed before training; what the stages after training say."""

from __future__ import annotations

import re

import torch

from distilens.data import load_dataset
from distilens.models import build_model
from distilens.pipeline.estimate import estimate_epoch_seconds


def test_the_estimate_times_a_copy_and_leaves_the_model_alone() -> None:
    bundle = load_dataset("builtin:digits")
    torch.manual_seed(0)
    model = build_model("cnn", bundle.spec, width=4).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = estimate_epoch_seconds(model, bundle.train, 64, torch.device("cpu"))
    assert seconds > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_run_prints_one_line_per_model_before_training(cli, tmp_path) -> None:
    result = cli("run", "--out", "runs/x", "--set", "teacher.args.width=4", "--set", "student.args.width=2",
                 "--set", "teacher.train.epochs=1", "--set", "distill.epochs=1", "--set", "explain.methods=[saliency]",
                 "--set", "explain.n_samples=4", "--set", "explain.sanity=false", cwd=tmp_path)
    assert result.code == 0, result.stderr
    out = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    for role in ("teacher", "student", "baseline"):
        assert f"{role}: cnn, " in out and "per epoch × 1 epochs (estimate)" in out, out
    for stage in ("evaluating on the test split", "explaining with saliency", "writing report.html"):  # no silent stages
        assert re.search(re.escape(stage) + r".*?: done in \d+\.\d s", out), stage
