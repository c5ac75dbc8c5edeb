"""Bring your own data: the CLI end to end on a CSV table and an image folder it has never seen."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from test_cli import distilens

FAST = ["--quiet", "--set", "teacher.train.epochs=3", "--set", "distill.epochs=3", "--set", "explain.n_samples=12",
        "--set", "explain.sanity_samples=4"]


def write_loans(path: Path, n: int = 240, with_target: bool = True) -> None:
    rng = random.Random(0)
    lines = ["age,income,région,default" if with_target else "age,income,région"]
    for i in range(n):
        age, income = rng.randint(18, 80), rng.gauss(50, 15)
        region = rng.choice(["north", "south", "east west"])
        default = int(income < 45 or (region == "south" and age < 30))
        cells = [str(age), "" if i % 37 == 0 else f"{income:.1f}", region] + ([str(default)] if with_target else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_csv_table_run_predict_and_export(tmp_path) -> None:
    write_loans(tmp_path / "loans.csv")
    proc = distilens(
        "run", "--out", "runs/loans", "--set", "name=loans", "--set", "data.source=csv:loans.csv", "--set", "data.target=default",
        "--set", "teacher.arch=mlp", "--set", "teacher.args={hidden: [64, 64]}", "--set", "student.arch=mlp",
        "--set", "student.args={hidden: [4]}", *FAST, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "loans"
    m = json.loads((run / "metrics.json").read_text())
    assert m["dataset"]["num_classes"] == 2 and m["teacher"]["accuracy"] > 0.7
    assert m["explanations"]["method"] == "integrated_gradients"  # gradcam does not apply to tables
    assert (run / "preprocessing.json").is_file()
    assert "per-row attributions" in (run / "report.html").read_text()
    write_loans(tmp_path / "new.csv", n=7, with_target=False)
    proc = distilens("predict", "runs/loans", "new.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "source,class,probability" and len(lines) == 8
    proc = distilens("predict", "runs/loans", "new.csv", "--explain", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "attribution:income" in (tmp_path / "p.csv").read_text().splitlines()[0]
    proc = distilens("export", "runs/loans", "--format", "torchscript", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "max_abs_diff" in proc.stdout and (run / "student.pt").is_file()


def test_csv_without_the_target_column_exits_2(tmp_path) -> None:
    write_loans(tmp_path / "loans.csv")
    proc = distilens("run", "--set", "data.source=csv:loans.csv", "--set", "data.target=label", "--set", "teacher.arch=mlp",
                     "--set", "student.arch=mlp", cwd=tmp_path)
    assert proc.returncode == 2 and "label" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_image_folder_run_with_odd_names_and_mixed_modes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c, name in enumerate(["top left", "bottom right", "ñandú"]):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(24):
            a = rng.integers(0, 60, (12, 12), dtype=np.uint8)
            r, k = [(0, 0), (6, 6), (0, 6)][c]
            a[r : r + 6, k : k + 6] = 230
            img = Image.fromarray(a)
            img = img.convert("RGB") if i % 3 == 0 else img
            img.save(folder / f"img {i}.{'png' if i % 2 else 'bmp'}")
    (root / "top left" / ".DS_Store").write_bytes(b"junk")
    proc = distilens(
        "run", "--out", "runs/photos", "--set", "data.source=imagefolder:photos", "--set", "data.image_size=[8, 8]",
        "--set", "teacher.args.width=8", "--set", "student.args.width=4", *FAST, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "runs" / "photos" / "metrics.json").read_text())
    assert m["dataset"]["num_classes"] == 3 and m["explanations"]["method"] == "gradcam"
    proc = distilens("predict", "runs/photos", "photos/ñandú", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 25


def test_soft_tree_student_on_digits(tmp_path) -> None:
    proc = distilens("run", "--out", "runs/tree", "--set", "student.arch=soft_tree", "--set", "student.args={depth: 3}",
                     "--set", "teacher.args.width=8", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "runs" / "tree" / "metrics.json").read_text())
    assert m["student"]["params"] < m["teacher"]["params"]
    assert "gradcam" not in [b["method"] for b in m["explanations"]["methods"]]  # no spatial layer
    html = (tmp_path / "runs" / "tree" / "report.html").read_text()
    assert "soft decision tree: node filters and leaves" in html and "→" in html  # the tree and decision paths


def test_own_teacher_as_a_state_dict_and_a_refused_pickle(tmp_path) -> None:
    import torch

    from distilens.data import load_dataset
    from distilens.models import build_model

    spec = load_dataset("builtin:digits").spec
    torch.manual_seed(0)
    teacher = build_model("cnn", spec, width=8)
    torch.save(teacher.state_dict(), tmp_path / "mine.pt")
    proc = distilens("run", "--out", "runs/own", "--set", "teacher.weights=mine.pt", "--set", "teacher.arch=cnn",
                     "--set", "teacher.args.width=8", "--set", "student.args.width=4", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "runs" / "own" / "metrics.json").read_text())
    assert m["teacher"]["params"] == sum(p.numel() for p in teacher.parameters())
    assert "teacher" not in (tmp_path / "runs" / "own" / "history.csv").read_text().split("\n", 1)[1]  # not trained

    torch.save(teacher, tmp_path / "whole.pt")  # a pickled module: refused, never unpickled
    proc = distilens("run", "--set", "teacher.weights=whole.pt", "--set", "teacher.args.width=8", cwd=tmp_path)
    assert proc.returncode == 2 and "state_dict" in proc.stderr and "Traceback" not in proc.stderr
    proc = distilens("run", "--set", "teacher.weights=mine.pt", "--set", "teacher.args.width=16", cwd=tmp_path)
    assert proc.returncode == 2 and "do not fit" in proc.stderr


def test_torchscript_teacher_needs_trust_and_its_run_can_be_explained_again(tmp_path) -> None:
    import torch

    from distilens.data import load_dataset
    from distilens.models import build_model

    model = build_model("cnn", load_dataset("builtin:digits").spec, width=8).eval()
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 8, 8)), tmp_path / "scripted.pt")
    proc = distilens("run", "--set", "teacher.weights=scripted.pt", cwd=tmp_path)
    assert proc.returncode == 2 and "trust_torchscript" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    proc = distilens("run", "--out", "runs/ts", "--set", "teacher.weights=scripted.pt", "--set", "teacher.trust_torchscript=true",
                     "--set", "student.args.width=4", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "runs" / "ts" / "teacher.torchscript").is_file()
    m = json.loads((tmp_path / "runs" / "ts" / "metrics.json").read_text())
    assert "gradcam" in m["explanations"]["skipped"]  # TorchScript takes no hooks
    proc = distilens("explain", "runs/ts", "--method", "saliency", "--n", "4", cwd=tmp_path)  # the folder cannot trust itself
    assert proc.returncode == 2 and "--trust-torchscript" in proc.stderr, proc.stderr
    proc = distilens("explain", "runs/ts", "--method", "saliency", "--n", "4", "--trust-torchscript", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
