"""`distilens run` with data.augment on a tiny generated Fashion-MNIST: stored views, online views, the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distilens.config import load_config
from distilens.data.recipes import with_dataset_defaults
from distilens.report.inputs import Predictions
from e2e import invoke
from test_fashion_mnist import make_copy

QUICK = ["--quiet", "--set", "teacher.train.epochs=1", "--set", "distill.epochs=2", "--set", "explain.methods=[]",
         "--set", "data.source=builtin:fashion_mnist", "--set", "data.root=fm"]


@pytest.mark.parametrize("views, record", [("{stored: 2}", {"stored": 2}), ("online", "online")])
def test_run_with_augmentation_records_splits_and_views(tmp_path: Path, views: str, record) -> None:
    make_copy(tmp_path / "fm", n_train=100, n_test=20)
    r = invoke("run", "--out", "run", *QUICK, "--set", "data.augment=[{name: crop, padding: 2}, {name: hflip}]",
               "--set", f"distill.teacher_views={views}", cwd=tmp_path)
    assert r.code == 0, r.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["dataset"]["split"] == {"test": "official", "val": "carved", "seed": 0, "val_fraction": 0.1}
    assert (m["dataset"]["n_train"], m["dataset"]["n_val"], m["dataset"]["n_test"]) == (90, 10, 20)
    assert m["augmentation"]["teacher_views"] == record
    assert [op["name"] for op in m["augmentation"]["ops"]] == ["crop", "hflip"]
    preds = Predictions.load(tmp_path / "run" / "predictions.safetensors")
    k = record["stored"] if isinstance(record, dict) else 1  # the similarity figure reads every stored view
    assert preds.train_teacher.shape[0] == preds.train_targets.shape[0] == 90 * k


def test_feature_losses_are_refused_with_augmentation(tmp_path: Path) -> None:
    make_copy(tmp_path / "fm", n_train=100, n_test=20)
    r = invoke("run", "--out", "run", *QUICK, "--set", "data.augment=[{name: hflip}]",
               "--set", "distill.losses=[{name: kd}, {name: hint}]", cwd=tmp_path)
    assert r.code == 2 and "hint needs the teacher's features or maps" in r.stderr
    assert not (tmp_path / "run").exists()


def test_teacher_views_need_augmentation() -> None:
    with pytest.raises(Exception, match="distill.teacher_views applies with data.augment"):
        load_config(None, ["distill.teacher_views=online"])


def test_the_fashion_mnist_recipe_fills_only_unset_keys() -> None:
    cfg = with_dataset_defaults(load_config(None, ["data.source=builtin:fashion_mnist", "student.args={width: 2}",
                                                   "distill.epochs=7"]))
    assert cfg.teacher.arch == "cnn" and cfg.teacher.args == {"width": 16}
    assert cfg.student.args == {"width": 2} and cfg.distill.epochs == 7  # given: kept
    plain = load_config(None, ["data.source=builtin:digits"])
    assert with_dataset_defaults(plain) is plain


@pytest.mark.parametrize("sets, message", [
    (["distill.teacher_views={stored: 0}"], "must be online or {stored: K}"),
    (["distill.optimizer.schedule=step"], "distill.optimizer.schedule: step needs distill.optimizer.milestones"),
    (["distill.epochs=10", "distill.optimizer.schedule=step", "distill.optimizer.milestones=[5, 3]"], "must increase"),
    (["distill.optimizer.milestones=[3]"], "apply to schedule: step"),
    (["teacher.train.label_smoothing=1.0"], "label_smoothing"),
])
def test_bad_recipe_keys_are_one_line_errors(sets: list[str], message: str) -> None:
    with pytest.raises(Exception, match=message.replace("{", r"\{").replace("[", r"\[")):
        load_config(None, ["data.augment=[{name: hflip}]", *sets])


def test_stored_views_default_and_online() -> None:
    cfg = load_config(None, ["data.augment=[{name: hflip}]", "distill.epochs=3"])
    assert cfg.distill.stored_views(True) == 3 and cfg.distill.stored_views(False) is None
    cfg = load_config(None, ["data.augment=[{name: hflip}]", "distill.teacher_views={stored: 8}"])
    assert cfg.distill.stored_views(True) == 8
    assert load_config(None, ["data.augment=[{name: hflip}]", "distill.teacher_views=online"]).distill.stored_views(True) is None
