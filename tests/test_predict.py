"""Predict on an image, a folder, a CSV: same preprocessing as training, explanations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distilens.data import load_dataset
from distilens.data.table import TablePreprocessor
from distilens.errors import DataError
from distilens.models import build_model
from distilens.predict import predict, write_predictions


def _folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c, base in (("dark", 20), ("light", 200)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = (rng.random((6, 6)) * 30 + base).astype(np.uint8)
            Image.fromarray(arr, "L").save(root / c / f"{i}.png")
    return root


def test_images_folder_and_file_use_training_preprocessing(tmp_path: Path) -> None:
    root = _folder(tmp_path / "train")
    bundle = load_dataset(f"imagefolder:{root}", val_fraction=0.2, test_fraction=0.2)
    model = build_model("cnn", bundle.spec, width=2).eval()
    rows = predict(model, bundle.spec, None, root)
    assert [r["source"] for r in rows][:2] == ["dark/0.png", "dark/1.png"] and len(rows) == 12
    assert all(r["class"] in ("dark", "light") and 0 < r["probability"] <= 1 for r in rows)
    # exactly the training preprocessing: the folder's test images give the test inputs' outputs
    with torch.no_grad():
        expected = torch.softmax(model(bundle.test.inputs), 1).max(1).values
    got = sorted(r["probability"] for r in rows)
    assert all(any(abs(e - g) < 1e-5 for g in got) for e in expected.tolist())
    one = predict(model, bundle.spec, None, root / "light" / "3.png")
    assert one[0]["source"] == "3.png" and one[0] == next(r for r in rows if r["source"] == "light/3.png") | {"source": "3.png"}


def test_image_explanations_and_bad_inputs(tmp_path: Path) -> None:
    root = _folder(tmp_path / "train")
    bundle = load_dataset(f"imagefolder:{root}", val_fraction=0.2, test_fraction=0.2)
    model = build_model("cnn", bundle.spec, width=2).eval()
    rows = predict(model, bundle.spec, None, root / "dark", explain=True, method="saliency")
    assert rows[0]["attribution"].shape == bundle.spec.shape
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not an image file or folder"):
        predict(model, bundle.spec, None, tmp_path / "x.txt")
    (root / "dark" / "bad.png").write_text("not a png")
    with pytest.raises(DataError, match=r"bad\.png"):
        predict(model, bundle.spec, None, root)


def test_csv_prediction_ignores_target_and_round_trips(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "colour", "y"])
        for i in range(40):
            w.writerow([i, ["red", "blue"][i % 2], i % 2])
    bundle = load_dataset(f"csv:{p}", target="y")
    pre = TablePreprocessor.from_dict(json.loads(json.dumps(bundle.preprocessing.to_dict())))
    model = build_model("mlp", bundle.spec, hidden=[4]).eval()
    new = tmp_path / "new.csv"
    new.write_text("colour,x\nred,3\ngreen,\n")
    rows = predict(model, bundle.spec, pre, new, explain=True)
    assert [r["source"] for r in rows] == ["new.csv:row 2", "new.csv:row 3"]
    assert set(rows[0]["attribution"]) == set(bundle.spec.feature_names)
    with_target = predict(model, bundle.spec, pre, p)
    assert len(with_target) == 40
    out = write_predictions(rows, tmp_path / "pred.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("source,class,probability,attribution:") and len(lines) == 3
    with pytest.raises(DataError, match="needs the training preprocessing"):
        predict(model, bundle.spec, None, new)


def test_predict_run_reads_preprocessing_json_and_old_image_runs_without_it(tmp_path: Path) -> None:
    from distilens.commands import predict_run
    from distilens.config import dump_config, load_config
    from distilens.models import save_model

    root = _folder(tmp_path / "train")
    bundle = load_dataset(f"imagefolder:{root}", val_fraction=0.2, test_fraction=0.2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(None, [f"data.source=imagefolder:{root}"])))
    save_model(build_model("cnn", bundle.spec, width=2), run / "student.safetensors", arch="cnn", args={"width": 2}, spec=bundle.spec)
    bundle.preprocessing.save(run)
    with_file = predict_run(run, root / "dark")
    (run / "preprocessing.json").unlink()  # a run folder from before images had preprocessing.json
    assert predict_run(run, root / "dark") == with_file and len(with_file.splitlines()) == 7


def test_predict_explain_out_names_each_heatmap_after_its_input(finished_runs, cli, tmp_path) -> None:
    """--out keeps a heatmap column; each PNG is named after its input; stdout and file share the precision."""
    run = finished_runs.copy("imagefolder", tmp_path)
    photos = run.work / "photos"
    result = cli("predict", str(run.path), str(photos), "--explain", "--out", str(tmp_path / "p.csv"), cwd=run.work)
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert rows and all(Path(r["heatmap"]).is_file() for r in rows)
    assert len({r["heatmap"] for r in rows}) == len(rows)
    with Image.open(rows[0]["heatmap"]) as png:  # the input, and the map drawn over it: two panels side by side
        assert png.width > 1.6 * png.height
    first = rows[0]
    assert Path(first["heatmap"]).name == Path(first["source"]).with_suffix("").as_posix().replace("/", "-") + ".heatmap.png"
    stdout = cli("predict", str(run.path), str(photos), cwd=run.work).stdout
    assert f",{first['probability']}" in stdout and len(first["probability"].split(".")[1]) == 6
