"""progress=: fit's steps and compare's models on a bar, through a callback, or not at all."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from rich.progress import Progress, TextColumn

from distilens.distill import fit
from distilens.explain import compare
from distilens.models import build_model
from distilens.pipeline.context import EpochBar
from distilens.testing import tiny_bundle


def _model(bundle):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    return build_model("mlp", bundle.spec, hidden=[8])


def test_fit_reports_every_step_of_every_epoch_to_a_callback() -> None:
    bundle = tiny_bundle(n=60, shape=(6,))
    steps = -(-len(bundle.train) // 16)
    calls: list[tuple[str, int, int]] = []
    fit(_model(bundle), bundle, epochs=2, batch_size=16, lr=1e-2, device="cpu", progress=lambda *a: calls.append(a))
    assert steps > 1 and calls == [(f"epoch {e}/2", s, steps) for e in (1, 2) for s in range(1, steps + 1)]


def test_fit_draws_a_bar_only_when_asked_or_on_a_terminal(capsys) -> None:
    bundle = tiny_bundle(n=60, shape=(6,))
    fit(_model(bundle), bundle, epochs=1, batch_size=16, device="cpu")  # None, and stderr is not a terminal here
    assert capsys.readouterr().err == ""
    fit(_model(bundle), bundle, epochs=2, batch_size=16, device="cpu", progress=True)
    assert "fit epoch 2/2" in capsys.readouterr().err


def test_the_same_weights_with_and_without_progress() -> None:
    bundle = tiny_bundle(n=60, shape=(6,))
    a, b = _model(bundle), _model(bundle)
    fit(a, bundle, epochs=2, batch_size=16, device="cpu", progress=False)
    fit(b, bundle, epochs=2, batch_size=16, device="cpu", progress=lambda *_: None)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_compare_reports_each_model_it_explains() -> None:
    bundle = tiny_bundle(n=30, shape=(6,))
    teacher, student, baseline = _model(bundle).eval(), _model(bundle).eval(), _model(bundle).eval()
    x = bundle.test.inputs[:4]
    calls: list[tuple[str, int, int]] = []
    compare(teacher, student, x, method="saliency", others={"baseline": (baseline, x)}, progress=lambda *a: calls.append(a))
    assert calls == [("teacher", 0, 3), ("student", 1, 3), ("baseline", 2, 3), ("done", 3, 3)]


def test_the_runs_bar_shows_the_steps_of_the_epoch_under_way() -> None:
    bar = Progress(TextColumn("{task.description} {task.completed}/{task.total} {task.fields[status]}"),
                   console=Console(file=io.StringIO()))
    row = EpochBar(bar, "student", 30)
    row.step("epoch 1/30", 7, 20)
    assert bar.tasks[0].fields["status"] == "epoch 1/30: step 7/20"
    row({"epoch": 1, "loss": 0.5, "val_accuracy": 0.9})
    row.step("epoch 2/30", 3, 20)
    assert bar.tasks[0].completed == 1 and bar.tasks[0].fields["status"] == "epoch 2/30: step 3/20  loss 0.500  val acc 90.0%"
    EpochBar(None, "teacher", 3).step("epoch 1/3", 1, 2)  # --quiet: no bar, nothing to update
