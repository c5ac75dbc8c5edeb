"""Bombs, limits and late validation (issue 13, families 3 and 4), through the CLI.

Each row is refused before any training with exit code 2, exactly one ``error:`` line, no
traceback, no advice that weakens safety, and every file byte-identical before and after.
The bounds themselves are in ``distilens/limits.py``; ``test_limits.py`` tests them one by one.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from distilens.config import dump_config, load_config
from distilens.data import load_dataset
from distilens.io import atomic_write_json
from distilens.models import build_model, save_model

from bad_input_support import write_file as _write, TINY, cli, copy_tiny_run, one_line_error, png_claiming, tree

S = "--set"
QUIET = ["--quiet", S, "runtime.threads=1"]
RUN = ["run", "tiny.yaml", "--out", "runs/new", *QUIET]
IMG = [S, "data.source=imagefolder:img", S, "data.image_size=[8, 8]"]
CSV = [S, "data.target=label", S, "teacher.arch=mlp", S, "teacher.args={}", S, "student.arch=mlp", S, "student.args={}"]
TEXT = [S, "data.text=text", S, "data.target=label", S, "teacher.arch=embedding_bag", S, "teacher.args={}",
        S, "student.arch=embedding_bag", S, "student.args={}"]


@dataclass
class Case:
    id: str
    argv: list[str]
    problem: tuple[str, ...]
    setup: Callable[[Path], None] | None = None


# --------------------------------------------------------------------------- hostile files


def _alias_bomb(levels: int = 8) -> list[str]:
    """YAML lines anchoring 9 ** levels values in a few hundred bytes (the "billion laughs")."""
    lines = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return lines


BOMB_LOSS = "distill:\n  losses:\n    - name: kd\n      temperature: 4.0\n" + "".join(
    f"      o{i}: {line}\n" for i, line in enumerate(_alias_bomb()))
BOMB_FLOW = "[" + ", ".join(_alias_bomb()) + "]"
DEEP_LIST = "[" * 20_000 + "]" * 20_000
DEEP_MAP = "a: " + "{a: " * 200 + "1" + "}" * 200 + "\n"
ROWS = "".join(f'{{"text": "word {i} and more", "label": {i % 2}}}\n' for i in range(30))


def _table(ws: Path) -> None:
    rows = "\n".join(f"{i % 7},{(i * 3) % 11},{i % 2}" for i in range(40))
    (ws / "tab.csv").write_text("x,y,label\n" + rows + "\n")


def _csv_with_huge_cell(rel: str) -> Callable[[Path], None]:
    def write(ws: Path) -> None:
        rows = [f"{i % 7},{i % 5},{i % 2}" for i in range(40)]
        rows[7] = '"' + "9" * 200_000 + '",1,0'
        (ws / rel).write_text("x,y,label\n" + "\n".join(rows) + "\n")

    return write


def _complex_teacher(ws: Path) -> None:
    spec = load_dataset("builtin:digits").spec
    state = build_model("cnn", spec, width=8).state_dict()
    state["head.weight"] = state["head.weight"].to(torch.complex64)
    torch.save(state, ws / "complex.pt")


def _int_teacher(ws: Path) -> None:
    spec = load_dataset("builtin:digits").spec
    state = {k: v.contiguous() for k, v in build_model("cnn", spec, width=8).state_dict().items()}
    state["head.bias"] = state["head.bias"].to(torch.int32)
    save_file(state, str(ws / "ints.safetensors"))


# --------------------------------------------------------------------------- family 3: bombs and limits

BOMBS = [
    Case("yaml-alias-bomb-in-loss-option", ["run", "bomb.yaml", *QUIET], ("more than 100,000 values",),
         _write("bomb.yaml", BOMB_LOSS)),
    Case("yaml-alias-bomb-in-set", [*RUN, S, f"distill.losses[0].junk={BOMB_FLOW}"], ("--set distill.losses[0].junk",
                                                                                      "more than 100,000 values")),
    Case("yaml-merge-key-bomb", ["run", "merge.yaml", *QUIET], ("more than 100,000 values",),
         _write("merge.yaml", "".join(f"k{i}: {line}\n" for i, line in enumerate(_alias_bomb()))
                + "distill: {<<: {o: *l7}}\n")),
    Case("yaml-deep-list", ["run", "deep.yaml", *QUIET], ("nested more than 100 deep",),
         _write("deep.yaml", f"teacher:\n  args:\n    hidden: {DEEP_LIST}\n")),
    Case("yaml-deep-mapping", ["run", "deepmap.yaml", *QUIET], ("nested more than 100 deep",), _write("deepmap.yaml", DEEP_MAP)),
    Case("yaml-deep-set", [*RUN, S, f"teacher.args.hidden={DEEP_LIST}"], ("nested more than 100 deep",)),
    Case("yaml-self-alias", ["run", "self.yaml", *QUIET], ("refers to the list or mapping it is inside of",),
         _write("self.yaml", "distill:\n  losses: &l [{name: kd, again: *l}]\n")),
    Case("yaml-huge-file", ["run", "huge.yaml", *QUIET], ("over the limit",),
         _write("huge.yaml", "name: tiny\n" + "# padding\n" * 500_000)),
    Case("yaml-huge-int", [*RUN, S, "seed=" + "9" * 5000], ("cannot read the value", "write a shorter value")),
    Case("jsonl-deep-line", [*RUN, S, "data.source=csv:deep.jsonl", *TEXT], ("deep.jsonl' line 31", "nested more than"),
         _write("deep.jsonl", ROWS + '{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "label": 1}\n')),
    Case("jsonl-200-deep", [*RUN, S, "data.source=csv:deep.jsonl", *TEXT], ("line 31", "nested more than 100 deep"),
         _write("deep.jsonl", ROWS + '{"text": ' + "[" * 200 + "]" * 200 + ', "label": 1}\n')),
    Case("image-size-huge", [*RUN, *IMG, S, "data.image_size=[60000, 60000]"], ("data.image_size", "pixels per image")),
    Case("image-size-over-budget", [*RUN, *IMG, S, "data.image_size=[3000, 3000]"],
         ("one batch of 64 images", "memory budget", "choose a smaller data.image_size")),
    Case("image-size-small-budget", [*RUN, *IMG, S, "data.image_size=[64, 64]", S, "data.max_memory_bytes=100000"],
         ("memory budget",)),
    Case("image-size-zero", [*RUN, *IMG, S, "data.image_size=[0, 8]"], ("at least 1 pixel",)),
    Case("image-size-one-pixel", [*RUN, *IMG, S, "data.image_size=[1, 1]"],
         ("cannot take inputs of shape (1, 1, 1)", "data.image_size")),
    Case("bomb-png-predict", ["predict", "runs/tiny", "bomb.png"], ("bomb.png' is not a readable image",),
         _write("bomb.png", png_claiming(50_000, 50_000))),
    Case("bomb-png-warning-band-predict", ["predict", "runs/tiny", "band.png"], ("band.png' is not a readable image",),
         _write("band.png", png_claiming(10_000, 10_000))),
    Case("bomb-png-in-predict-folder", ["predict", "runs/tiny", "img"], ("bomb.png' is not a readable image",),
         _write("img/b/bomb.png", png_claiming(50_000, 50_000))),
    Case("bomb-png-in-training-folder", [*RUN, *IMG], ("bomb.png' is not a readable image", "skip_bad_files"),
         _write("img/b/bomb.png", png_claiming(10_000, 10_000))),
    Case("csv-huge-cell-training", [*RUN, S, "data.source=csv:big.csv", *CSV], ("big.csv' line 9",
                                                                                "longer than 131,072 characters"),
         _csv_with_huge_cell("big.csv")),
    Case("csv-huge-cell-predict", ["predict", "runs/table", "big.csv"], ("big.csv' line 9", "longer than 131,072"),
         _csv_with_huge_cell("big.csv")),
    Case("tsv-huge-cell-text", [*RUN, S, "data.source=csv:big.tsv", *TEXT], ("big.tsv' line",),
         _write("big.tsv", "text\tlabel\n" + "".join(f"w{i}\t{i % 2}\n" for i in range(20)) + "x" * 200_000 + "\t1\n")),
]

# --------------------------------------------------------------------------- family 4: validate before training

VALIDATION = [
    Case("inf-student-lr", [*RUN, S, "distill.optimizer.lr=.inf"], ("'distill.optimizer.lr' is inf", "finite")),
    Case("inf-teacher-lr", [*RUN, S, "teacher.train.lr=.inf"], ("'teacher.train.lr' is inf",)),
    Case("inf-loss-weight", [*RUN, S, "distill.losses[1].weight=.inf"], ("'distill.losses[1].weight' is inf",)),
    Case("inf-warmup", [*RUN, S, "teacher.train.warmup_epochs=.inf"], ("'teacher.train.warmup_epochs' is inf",)),
    Case("inf-student-warmup", [*RUN, S, "distill.optimizer.warmup_epochs=.inf"], ("warmup_epochs' is inf",)),
    Case("nan-temperature", [*RUN, S, "distill.losses[0].temperature=.nan"], ("'distill.losses[0].temperature' is nan",)),
    Case("neg-inf-loss-option", [*RUN, S, "distill.losses[0].temperature=-.inf"], ("is -inf",)),
    Case("nan-model-arg", [*RUN, S, "student.args.width=.nan"], ("'student.args.width' is nan",)),
    Case("inf-report-threshold", [*RUN, S, "report.margin=.inf"], ("'report.margin' is inf",)),
    Case("nan-in-yaml-file", ["run", "nan.yaml", *QUIET], ("'distill.optimizer.lr' is nan",),
         _write("nan.yaml", "distill:\n  optimizer: {lr: .NaN}\n")),
    Case("inf-in-loss-list-yaml", ["run", "inf.yaml", *QUIET], ("'distill.losses[0].weight' is inf",),
         _write("inf.yaml", "distill:\n  losses: [{name: kd, weight: .Inf}]\n")),
    Case("set-index-into-missing-list", [*RUN, S, "teacher.args.hidden[0]=32"],
         ("index [0] is out of range (list has 0)", "--set teacher.args.hidden=[...]")),
    Case("set-unknown-key-with-index", [*RUN, S, "a[99]=1"], ("unknown key 'a'", "valid keys there: name")),
    Case("set-index-into-mapping", [*RUN, S, "distill.optimizer[0]=1"], ("'distill.optimizer' is not a list",)),
    Case("set-index-into-scalar", [*RUN, S, "distill.epochs[0]=1"], ("'distill.epochs' is not a list",)),
    Case("set-index-of-index", [*RUN, S, "distill.losses[0][1]=2"], ("'distill.losses[0]' is not a list",)),
    Case("set-far-index", [*RUN, S, "distill.losses[99].weight=1"], ("index [99] is out of range (list has 2)",)),
    Case("set-key-under-scalar", [*RUN, S, "distill.epochs=3", S, "distill.epochs.x=1"],
         ("'distill.epochs' is not a mapping",)),
    Case("set-no-such-key", [*RUN, S, "distill.grad_clip=1.0"], ("unknown key 'distill.grad_clip'",)),
    Case("model-args-far-too-large", [*RUN, S, "student.args.width=10000000"], ("needs more memory than there is",)),
    Case("soft-tree-far-too-deep", [*RUN, S, "student.arch=soft_tree", S, "student.args={depth: 60}"],
         ("needs more memory than there is",)),
    Case("model-width-zero", [*RUN, S, "student.args.width=0"], ("layers of size 0",)),
    Case("model-width-negative", [*RUN, S, "teacher.args.width=-1"], ("teacher.args {'width': -1}", "cannot be built")),
    Case("explain-steps-huge", [*RUN, S, "explain.steps=1000000000"], ("'explain.steps'", "less than or equal to 1000")),
    Case("num-workers-huge", [*RUN, S, "data.num_workers=100000"], ("'data.num_workers'",)),
    Case("complex-teacher-weights", [*RUN, S, "teacher.weights=complex.pt", S, "teacher.arch=cnn"],
         ("'head.weight' holds complex64 where the model holds float32",), _complex_teacher),
    Case("int-teacher-weights", [*RUN, S, "teacher.weights=ints.safetensors", S, "teacher.arch=cnn"],
         ("'head.bias' holds int32",), _int_teacher),
    Case("export-out-is-folder", ["export", "runs/tiny", "--format", "onnx", "--out", "img"],
         ("--out 'img' is a folder", "give the path of a file")),
    Case("export-out-under-a-file", ["export", "runs/tiny", "--format", "torchscript", "--out", "tiny.yaml/student.pt"],
         ("--out 'tiny.yaml/student.pt'", "'tiny.yaml' is a file, not a folder")),
    Case("predict-out-is-folder", ["predict", "runs/tiny", "img/a/0.png", "--out", "img"], ("--out 'img' is a folder",)),
    Case("pickled-checkpoint-on-resume", ["run", "tiny.yaml", *QUIET, "--resume"], ("student.pt", "re-save the weights")),
]

CASES = BOMBS + VALIDATION


def _images(root: Path) -> None:
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            a = np.full((8, 8), 30 * c + i, dtype=np.uint8)
            a[:4, :4] = 255 - 30 * c
            Image.fromarray(a).save(root / name / f"{i}.png")


def _table_run(ws: Path) -> None:
    """runs/table: a table student (untrained) with its preprocessing, all predict needs; no training."""
    _table(ws)
    bundle = load_dataset("csv:tab.csv", target="label")
    run = ws / "runs" / "table"
    run.mkdir(parents=True)
    save_model(build_model("mlp", bundle.spec), run / "student.safetensors", arch="mlp", args={}, spec=bundle.spec)
    atomic_write_json(run / "preprocessing.json", bundle.preprocessing.to_dict())
    (run / "config.yaml").write_text(dump_config(load_config(None, ["data.source=csv:tab.csv", "data.target=label"])))


def _pickled_checkpoint(ws: Path) -> None:
    """runs/.tiny.partial: an interrupted run whose student checkpoint is a pickled module (digest consistent)."""
    import hashlib
    import shutil

    staging = ws / "runs" / ".tiny.partial"
    shutil.copytree(ws / "runs" / "tiny", staging)
    for name in ("teacher.pt", "teacher.pt.sha256"):
        (staging / "checkpoints" / name).unlink()
    (staging / "student.safetensors").unlink()
    (staging / "student.json").unlink()
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    data = buf.getvalue()
    (staging / "checkpoints" / "student.pt").write_bytes(data)
    (staging / "checkpoints" / "student.pt.sha256").write_text(
        json.dumps({"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))


@pytest.fixture
def ws(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    copy_tiny_run(tmp_path_factory, tmp_path / "runs" / "tiny")
    _images(tmp_path / "img")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(ws: Path, capfd, case: Case) -> None:
    if case.setup is not None:
        case.setup(ws)
    if "runs/table" in case.argv:
        _table_run(ws)
    if case.id == "pickled-checkpoint-on-resume":
        _pickled_checkpoint(ws)
    before = tree(ws)
    line = one_line_error(cli(*case.argv, capfd=capfd))
    for words in case.problem:
        assert words in line, line
    assert tree(ws) == before, "files were changed, added or removed"


def test_catalogue_covers_each_family() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(BOMBS) >= 20 and len(VALIDATION) >= 20


def _hf_folder(folder: Path, vocab_size: int) -> None:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    words = ["[PAD]", "[UNK]", *(f"w{i}" for i in range(30)), "word", "and", "more"]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=64, num_labels=2)
    transformers.BertForSequenceClassification(config).save_pretrained(str(folder))
    tok.save(str(folder / "tokenizer.json"))


@pytest.mark.parametrize("kind", ["unknown-model-type", "config-vocab-differs-from-weights", "tokenizer-larger-than-vocab"])
def test_hugging_face_folders_that_do_not_load_are_one_line(ws: Path, capfd, kind: str) -> None:
    _write("texts.jsonl", ROWS)(ws)
    folder = ws / "bert"
    _hf_folder(folder, vocab_size=40 if kind != "tokenizer-larger-than-vocab" else 10)
    config = json.loads((folder / "config.json").read_text())
    if kind == "unknown-model-type":
        config["model_type"] = "nosuchmodel"
    elif kind == "config-vocab-differs-from-weights":
        config["vocab_size"] = 80
    (folder / "config.json").write_text(json.dumps(config))
    before = tree(ws)
    line = one_line_error(cli(*RUN, S, "data.source=csv:texts.jsonl", S, "data.text=text", S, "data.target=label",
                              S, "student.arch=embedding_bag", S, "student.args={}", S, "teacher.weights=hf:bert", capfd=capfd))
    expected = {"unknown-model-type": "model_type 'nosuchmodel'", "config-vocab-differs-from-weights": "differs from what",
                "tokenizer-larger-than-vocab": "tokenizer.json has 35 tokens"}[kind]
    assert expected in line, line
    assert tree(ws) == before


# --------------------------------------------------------------------------- not errors: what must work


def test_an_arch_named_without_args_gets_its_own_defaults(tmp_path: Path) -> None:
    """Its own args, never another arch's; sized by role: a teacher-sized teacher, a student-sized student."""
    cfg = load_config(None, ["teacher.arch=mlp", "student.arch=mlp"])
    assert cfg.teacher.args == {"hidden": [256, 256]} and cfg.student.args == {"hidden": [32]}
    assert load_config(None, ["teacher.arch=soft_tree"]).teacher.args == {}  # no role sizes: the arch's defaults
    assert load_config(None).teacher.args == {"width": 64} and load_config(None).student.args == {"width": 8}
    (tmp_path / "c.yaml").write_text("student: {arch: resnet}\nteacher: {arch: cnn}\n")
    from_yaml = load_config(tmp_path / "c.yaml")
    assert from_yaml.student.args == {"depth": 8, "width": 8} and from_yaml.teacher.args == {"width": 64}
    (tmp_path / "dumped.yaml").write_text(dump_config(from_yaml))
    assert load_config(tmp_path / "dumped.yaml") == from_yaml  # config.yaml round-trips (and --resume compares equal)
    assert dump_config(load_config(tmp_path / "dumped.yaml")) == dump_config(from_yaml)


def test_the_readme_csv_example_runs(ws: Path, capfd) -> None:
    """README: `distilens run --set data.source=csv:loans.csv --set data.target=default --set teacher.arch=mlp
    --set student.arch=mlp` (here on a small table, one epoch each)."""
    _table(ws)
    result = cli("run", *QUIET, "--out", "runs/csv", S, "data.source=csv:tab.csv", S, "data.target=label",
                 S, "teacher.arch=mlp", S, "student.arch=mlp", S, "teacher.train.epochs=1", S, "distill.epochs=1",
                 S, "distill.baseline=false", S, "explain.n_samples=4", S, "explain.sanity=false", capfd=capfd)
    assert result.code == 0, result.stderr
    assert json.loads((ws / "runs" / "csv" / "student.json").read_text())["args"] == {"hidden": [32]}


def test_predictions_csv_neutralises_formula_cells(ws: Path, capfd) -> None:
    """Class names and file names that a spreadsheet would run as formulas get a leading quote."""
    meta_path = ws / "runs" / "tiny" / "student.json"
    meta = json.loads(meta_path.read_text())
    names = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "safe", "c6", "c7", "c8", "c9"]
    meta["input_spec"]["class_names"] = names
    meta_path.write_text(json.dumps(meta))
    (ws / "inputs").mkdir()
    for name in ("=cmd.png", "-x.png", "ok.png"):
        Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(ws / "inputs" / name)
    for out in (["--out", "preds.csv"], []):
        result = cli("predict", "runs/tiny", "inputs", *out, capfd=capfd)
        assert result.code == 0, result.stderr
        text = (ws / "preds.csv").read_text() if out else result.stdout
        rows = list(csv.reader(io.StringIO(text)))[1:]
        sources = {r[0] for r in rows}
        assert sources == {"'=cmd.png", "'-x.png", "ok.png"}, rows
        for r in rows:
            assert not r[1].startswith(("=", "+", "-", "@", "\t")), r
            assert r[1].lstrip("'") in names
