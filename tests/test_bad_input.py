"""The bad-input catalogue: every row is a mistake a user can make, run through the CLI.

Each row asserts what the user sees: exit code 2, exactly one line on stderr that names the
problem and says how to fix it, no traceback, nothing new left beside the run folders (no
``runs/NAME``, no ``runs/.NAME.partial``, no temporary files) and the existing run folder
byte-identical.

The CLI runs in this process (``distilens.cli.main``, the console script's entry point) so
that forty cases take seconds, not minutes; warnings raised meanwhile are counted as stderr
lines (a user would see them there). ``test_in_process_runner_matches_a_real_process``
shows the two give the same exit code and stderr. The hostile cases (run folders that carry
code, bombs, --overwrite on what is not a run) are in ``test_hostile*.py``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load

from distilens.data import load_dataset
from distilens.data.bundle import InputSpec
from distilens.models import build_model, save_model

from bad_input_support import TINY, cli, copy_tiny_run, tree
from test_cli import distilens


# --------------------------------------------------------------------------- the shared workspace


def _image(path: Path, value: int) -> None:
    a = np.full((8, 8), value, dtype=np.uint8)
    a[:4, :4] = 255 - value
    Image.fromarray(a).save(path)


def _images(root: Path, classes: list[str], n: int = 6) -> None:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            _image(root / name / f"{i}.png", 20 * c + i)


def _teachers(work: Path) -> None:
    t = work / "teachers"
    t.mkdir()
    digits = load_dataset("builtin:digits").spec
    torch.manual_seed(0)
    good = build_model("cnn", digits, width=8)
    save_model(good, t / "good.safetensors", arch="cnn", args={"width": 8}, spec=digits)
    torch.save(good, t / "whole.pt")  # a pickled module, never to be unpickled
    data = (t / "good.safetensors").read_bytes()
    for name, content in (("cut", data[: len(data) // 2]), ("tampered", data[:-8] + bytes(8))):
        (t / f"{name}.safetensors").write_bytes(content)
        shutil.copy(t / "good.json", t / f"{name}.json")
    (t / "bare-cut.safetensors").write_bytes(data[: len(data) // 2])  # no .json: a plain state dict
    torch.save(good.state_dict(), t / "state.pt")
    state = (t / "state.pt").read_bytes()
    (t / "cut.pt").write_bytes(state[: len(state) // 2])
    (t / "noise.safetensors").write_bytes(bytes(range(256)) * 8)
    three = InputSpec(kind="image", shape=digits.shape, class_names=("a", "b", "c"), mean=digits.mean, std=digits.std)
    save_model(build_model("cnn", three, width=8), t / "three.safetensors", arch="cnn", args={"width": 8}, spec=three)
    table = load_dataset("builtin:breast_cancer").spec
    save_model(build_model("mlp", table), t / "table.safetensors", arch="mlp", args={}, spec=table)
    (t / "folder.safetensors").mkdir()


def _data(work: Path) -> None:
    _images(work / "img" / "good", ["a", "b"])
    (work / "img" / "empty").mkdir(parents=True)
    _images(work / "img" / "one", ["only"])
    _images(work / "img" / "truncated", ["a", "b"])
    png = (work / "img" / "truncated" / "a" / "0.png").read_bytes()
    (work / "img" / "truncated" / "a" / "0.png").write_bytes(png[: len(png) // 2])
    _images(work / "img" / "text", ["a", "b"])
    (work / "img" / "text" / "b" / "notes.png").write_text("not a picture\n")
    _images(work / "img" / "noimages", ["a"])
    (work / "img" / "noimages" / "b").mkdir()
    csv = work / "csv"
    csv.mkdir()
    rows = [f"{i % 7},{(i * 3) % 11},{i % 2}" for i in range(40)]
    (csv / "good.csv").write_text("x,y,label\n" + "\n".join(rows) + "\n")
    (csv / "constant.csv").write_text("x,y,label\n" + "\n".join(f"{i},{i},1" for i in range(40)) + "\n")
    (csv / "garbage.csv").write_bytes(bytes(range(128, 256)) * 4)
    (csv / "words.csv").write_text("x,label\n" + "\n".join(f"{'abc' if i == 3 else i},{i % 2}" for i in range(40)) + "\n")
    (csv / "nan.csv").write_text("x,y,label\n" + "\n".join(f"{'nan' if i == 5 else i},{i},{i % 2}" for i in range(40)) + "\n")
    (csv / "inf.csv").write_text("x,y,label\n" + "\n".join(f"{i},{'inf' if i == 9 else i},{i % 2}" for i in range(40)) + "\n")
    (csv / "empty.csv").write_text("")
    (csv / "header.csv").write_text("x,y,label\n")
    (work / "afile").write_text("a regular file; nothing can be created under it\n")
    (work / "readonly").mkdir()
    (work / "readonly").chmod(0o555)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one finished run (runs/tiny), model files and data files to misuse."""
    work = tmp_path_factory.mktemp("bad")
    (work / "tiny.yaml").write_text(TINY)
    copy_tiny_run(tmp_path_factory, work / "runs" / "tiny")
    _teachers(work)
    _data(work)
    return work


# --------------------------------------------------------------------------- the catalogue

S = "--set"
IMG = [S, "data.image_size=[8, 8]", S, "teacher.args.width=4", S, "student.args.width=4"]
CSV = [S, "data.target=label", S, "teacher.arch=mlp", S, "teacher.args={}", S, "student.arch=mlp", S, "student.args={}"]
WEIGHTS = [S, "teacher.arch=cnn", S, "teacher.args.width=8"]

# (id, config text or None, CLI arguments, what the line names, how it says to fix it)
CASES = [
    # ---- the config file and --set
    ("yaml-syntax", "data: [oops\n", [], "YAML syntax error at line 2", "fix the YAML"),
    ("yaml-not-mapping", "- a\n- b\n", [], "top level must be a mapping", "name:, data:"),
    ("unknown-key", "distill:\n  epoch: 3\n", [], "unknown key 'distill.epoch'", "did you mean 'epochs'?"),
    ("unknown-top-key", "nmae: x\n", [], "unknown key 'nmae'", "did you mean 'name'?"),
    ("wrong-type", "distill:\n  epochs: many\n", [], "'distill.epochs'", "should be a valid integer"),
    ("negative-epochs", None, [S, "distill.epochs=-1"], "'distill.epochs'", "greater than or equal to 1"),
    ("zero-batch", None, [S, "teacher.train.batch_size=0"], "'teacher.train.batch_size'", "greater than or equal to 1"),
    ("temperature-zero", None, [S, "distill.losses[0].temperature=0"], "temperature", "must be > 0"),
    ("temperature-negative", None, [S, "distill.losses[0].temperature=-2"], "temperature", "must be > 0"),
    ("weights-sum-zero", "distill:\n  losses: [{name: kd, weight: 0}, {name: ce, weight: 0}]\n", [],
     "weights sum to 0", "positive weight"),
    ("negative-lr", None, [S, "distill.optimizer.lr=-0.1"], "'distill.optimizer.lr'", "greater than 0"),
    ("fractions", None, [S, "data.val_fraction=0.5", S, "data.test_fraction=0.5"], "val_fraction + test_fraction",
     "below 0.9"),
    ("bad-name", None, [S, "name=../escape"], "'name'", "letters, digits"),
    ("empty-set", None, [S, ""], "--set ''", "expected KEY=VALUE"),
    ("set-without-value", None, [S, "distill.epochs"], "--set 'distill.epochs'", "expected KEY=VALUE"),
    ("set-index-out-of-range", None, [S, "distill.losses[5].weight=1"], "index [5] is out of range", "list has 2"),
    ("missing-config", None, ["nope.yaml"], "'nope.yaml' does not exist", "check the path"),
    ("config-is-folder", None, ["img"], "is a directory", "give the path of a YAML file"),
    # ---- unknown names
    ("unknown-dataset", None, [S, "data.source=builtin:mnist"], "unknown dataset 'mnist'", "known datasets: "),
    ("unknown-source-kind", None, [S, "data.source=ftp:x"], "unknown source kind 'ftp'", "builtin:"),
    ("unknown-model", None, [S, "student.arch=cnnn"], "unknown model 'cnnn'", "did you mean 'cnn'?"),
    ("unknown-loss", None, [S, "distill.losses[0].name=kld"], "unknown loss 'kld'", "did you mean 'kd'?"),
    ("unknown-explainer", None, [S, "explain.methods=[gradcamm]"], "unknown explainer 'gradcamm'",
     "did you mean 'gradcam'?"),
    ("unknown-optimizer", None, [S, "distill.optimizer.name=adam"], "'distill.optimizer.name'", "'adamw' or 'sgd'"),
    ("unknown-device", None, [S, "runtime.device=tpu"], "'runtime.device'", "auto, cpu, cuda"),
    ("unknown-model-arg", None, [S, "student.args.widht=4"], "widht", "width"),
    ("transfer-copies-not-text", None, [S, "distill.transfer_copies=2"], "distill.transfer_copies needs text data",
     "set it to 0"),
    # ---- teacher files
    ("missing-teacher", None, [S, "teacher.weights=teachers/none.safetensors"], "does not exist", "check the path"),
    ("teacher-is-folder", None, [S, "teacher.weights=teachers/folder.safetensors", *WEIGHTS], "is a folder",
     "give the path of a weights file"),
    ("pickle-teacher", None, [S, "teacher.weights=teachers/whole.pt", *WEIGHTS], "pickled", "state_dict"),
    ("truncated-teacher", None, [S, "teacher.weights=teachers/cut.safetensors"], "cut short", "checksum"),
    ("tampered-teacher", None, [S, "teacher.weights=teachers/tampered.safetensors"], "was changed", "checksum"),
    ("truncated-bare-teacher", None, [S, "teacher.weights=teachers/bare-cut.safetensors", *WEIGHTS],
     "bare-cut.safetensors", "not a complete safetensors file"),
    ("truncated-pt-teacher", None, [S, "teacher.weights=teachers/cut.pt", *WEIGHTS], "not a PyTorch weights file",
     "save the state dict again"),
    ("noise-teacher", None, [S, "teacher.weights=teachers/noise.safetensors", *WEIGHTS], "noise.safetensors",
     "not a complete safetensors file"),
    ("teacher-class-count", None, [S, "teacher.weights=teachers/three.safetensors"], "predicts 3 classes, the data has 10",
     "use a model trained on this data's classes"),
    ("teacher-input-shape", None, [S, "teacher.weights=teachers/table.safetensors"],
     "cannot take inputs of shape (1, 8, 8)", "use a model made for this data's inputs"),
    # ---- image folders
    ("missing-folder", None, [S, "data.source=imagefolder:img/none", *IMG], "does not exist", "check data.source"),
    ("folder-is-file", None, [S, "data.source=imagefolder:afile", *IMG], "not a folder", "check data.source"),
    ("empty-folder", None, [S, "data.source=imagefolder:img/empty", *IMG], "no class sub-folders", "its own folder"),
    ("one-class", None, [S, "data.source=imagefolder:img/one", *IMG], "only one class", "two or more"),
    ("class-without-images", None, [S, "data.source=imagefolder:img/noimages", *IMG], "has no images",
     "add images or remove the folder"),
    ("truncated-image", None, [S, "data.source=imagefolder:img/truncated", *IMG], "0.png' is not a readable image",
     "skip_bad_files"),
    ("non-image-file", None, [S, "data.source=imagefolder:img/text", *IMG], "notes.png' is not a readable image",
     "skip_bad_files"),
    # ---- CSV tables
    ("csv-missing", None, [S, "data.source=csv:csv/none.csv", *CSV], "does not exist", "check data.source"),
    ("csv-no-target", None, [S, "data.source=csv:csv/good.csv", *CSV, S, "data.target=default"],
     "column 'default' not found", "columns are: x, y, label"),
    ("csv-constant-target", None, [S, "data.source=csv:csv/constant.csv", *CSV], "has one class", "two or more"),
    ("csv-garbage", None, [S, "data.source=csv:csv/garbage.csv", *CSV], "not UTF-8 text", "save it as UTF-8"),
    ("csv-empty", None, [S, "data.source=csv:csv/empty.csv", *CSV], "is empty", "header row and data rows"),
    ("csv-header-only", None, [S, "data.source=csv:csv/header.csv", *CSV], "no data rows", "add one row per sample"),
    ("csv-nan", None, [S, "data.source=csv:csv/nan.csv", *CSV], "column 'x' has NaN or infinite values in rows 7",
     "leave missing values empty"),
    ("csv-inf", None, [S, "data.source=csv:csv/inf.csv", *CSV], "column 'y' has NaN or infinite values in rows 11",
     "leave missing values empty"),
    ("csv-teacher-mismatch", None, [S, "data.source=csv:csv/good.csv", *CSV, S, "teacher.weights=teachers/good.safetensors"],
     "teacher cannot take inputs of shape (2,)", "use a model made for this data's inputs"),
    # ---- run folders
    # Root writes into any folder whatever its mode, so as root the chmod row is skipped and
    # the run folder is asked for under a regular file, where no user can create one.
    ("unwritable-out-under-file", None, ["--out", "afile/run"], "afile' is a file", "choose another --out"),
    ("out-is-file", None, ["--out", "afile"], "exists and is not a folder", "choose another --out"),
    ("existing-run", "TINY", [], "already exists", "--overwrite"),
    ("resume-changed-config", "TINY", ["--resume", S, "distill.epochs=2"], "config differs", "resume with the same config"),
    ("resume-nothing", None, ["--out", "runs/never", "--resume"], "no earlier run", "run without --resume"),
    ("overwrite-and-resume", "TINY", ["--overwrite", "--resume"], "exclude each other", "choose one"),
    ("cache-dir-is-file", None, [S, "distill.cache_dir=afile/cache"], "afile' is a file", "give a folder"),
    ("unwritable-out-chmod", "READONLY", ["--out", "readonly/run"], "cannot write in", "choose a writable --out"),
    # ---- other commands on the run folder
    ("explain-not-a-run", None, ["@explain", "img"], "not a run folder", "give the folder"),
    ("export-bad-format", None, ["@export", "runs/tiny", "--format", "pdf"], "--format 'pdf'", "onnx or torchscript"),
    ("predict-missing-input", None, ["@predict", "runs/tiny", "none.png"], "does not exist", "give an image"),
    ("list-unknown", None, ["@list", "things"], "cannot list 'things'", "choose one of"),
]


def _argv(config: str | None, args: list[str], work: Path, case_id: str) -> list[str]:
    if args and args[0].startswith("@"):  # another command than `run`
        return [args[0][1:], *args[1:]]
    head: list[str] = []
    if config == "READONLY":
        pass
    elif config == "TINY":
        head = ["tiny.yaml"]
    elif config is not None:
        (work / "configs").mkdir(exist_ok=True)
        path = work / "configs" / f"{case_id}.yaml"
        path.write_text(config)
        head = [str(path.relative_to(work))]
    if "--out" not in args and config != "TINY":
        head += ["--out", f"runs/{case_id}"]
    return ["run", *head, *args, "--quiet", S, "runtime.threads=1"]


@pytest.mark.parametrize("case_id, config, args, problem, fix", CASES, ids=[c[0] for c in CASES])
def test_bad_input(work: Path, capfd, monkeypatch, case_id: str, config: str | None, args: list[str], problem: str,
                   fix: str) -> None:
    if config == "READONLY" and os.geteuid() == 0:
        pytest.skip("root ignores folder permissions; unwritable-out-under-file covers an unwritable --out")
    monkeypatch.chdir(work)
    argv = _argv(config, args, work, case_id)
    before = tree(work)
    result = cli(*argv, capfd=capfd)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert problem in lines[0], lines[0]
    assert fix in lines[0], lines[0]
    assert tree(work) == before, "the run left files behind or changed the existing run folder"


def test_catalogue_is_large_and_covers_the_issue() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) >= 30
    for needed in ("yaml-syntax", "unknown-key", "wrong-type", "negative-epochs", "temperature-zero", "weights-sum-zero",
                   "unknown-dataset", "unknown-model", "unknown-loss", "unknown-explainer", "missing-teacher",
                   "teacher-is-folder", "empty-folder", "one-class", "truncated-image", "non-image-file",
                   "csv-no-target", "csv-constant-target", "csv-garbage", "csv-nan", "csv-inf", "teacher-class-count",
                   "teacher-input-shape", "pickle-teacher", "truncated-teacher", "tampered-teacher", "unwritable-out-under-file",
                   "existing-run", "resume-changed-config", "empty-set"):
        assert needed in ids, needed


def test_in_process_runner_matches_a_real_process(work: Path, capfd, monkeypatch) -> None:
    monkeypatch.chdir(work)
    for case_id in ("unknown-key", "truncated-teacher"):
        _, config, args, _, _ = next(c for c in CASES if c[0] == case_id)
        argv = _argv(config, args, work, case_id)
        here = cli(*argv, capfd=capfd)
        real = distilens(*argv, cwd=work)
        assert (real.returncode, real.stderr) == (here.code, here.stderr)


# --------------------------------------------------------------------------- not in the table: these keep or make files

from distilens.distill.checkpoint import load_checkpoint  # noqa: E402
from distilens.distill.objectives import LOSSES, Objective, StepTensors  # noqa: E402


class _BlowUp(Objective):
    """A stand-in for a diverging loss: NaN from the 2nd step of epoch 2 on."""

    name = "test_blowup"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.steps_in_epoch_2 = 0

    def forward(self, step: StepTensors) -> torch.Tensor:
        self.steps_in_epoch_2 += step.epoch == 2
        return step.student_logits.sum() * (float("nan") if self.steps_in_epoch_2 >= 2 else 0.0)


def test_a_loss_that_becomes_nan_stops_with_one_line_and_keeps_the_last_good_checkpoint(work, capfd, monkeypatch) -> None:
    monkeypatch.chdir(work)
    monkeypatch.setitem(LOSSES._items, "test_blowup", _BlowUp)
    result = cli("run", "tiny.yaml", "--out", "runs/nan", "--quiet", S, "distill.epochs=3", S,
                 "distill.losses=[{name: ce}, {name: test_blowup}]", capfd=capfd)
    staging = work / "runs" / ".nan.partial"
    try:
        assert result.code == 2 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert re.search(r"non-finite in epoch 2, step 2 of \d+ \(terms: loss, test_blowup\); the last good checkpoint is "
                         r"'.*\.nan\.partial/checkpoints/student\.pt'; lower the learning rate", lines[0]), lines[0]
        assert not (work / "runs" / "nan").exists()
        assert load_checkpoint(staging / "checkpoints" / "student.pt")["epoch"] == 1
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def test_an_interrupted_cache_file_is_recomputed_with_a_warning(work, capfd, monkeypatch) -> None:
    monkeypatch.chdir(work)
    shared = work / "shared-cache"
    try:
        first = cli("run", "tiny.yaml", "--out", "runs/cache1", "--quiet", S, "distill.cache_dir=shared-cache", capfd=capfd)
        assert first.code == 0, first.stderr
        (cache_file,) = shared.glob("softlabels-*.safetensors")
        good = load(cache_file.read_bytes())  # a copy: load_file would map the file we are about to cut
        cache_file.write_bytes(cache_file.read_bytes()[: cache_file.stat().st_size // 2])  # cut short mid-write
        second = cli("run", "tiny.yaml", "--out", "runs/cache2", "--quiet", S, "distill.cache_dir=shared-cache", capfd=capfd)
        assert second.code == 0, second.stderr
        assert "Traceback" not in second.stderr
        warned = [line for line in second.stderr.splitlines() if "soft-label cache" in line]
        assert warned and "computing the soft labels again" in warned[0], second.stderr
        again = load(cache_file.read_bytes())  # the recomputed soft labels replaced the broken file
        assert again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
        a, b = (load((work / "runs" / r / "student.safetensors").read_bytes()) for r in ("cache1", "cache2"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        for path in (shared, work / "runs" / "cache1", work / "runs" / "cache2"):
            shutil.rmtree(path, ignore_errors=True)
