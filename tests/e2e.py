"""The ``distilens`` command end to end, for the tests: run in this process, and finished runs made once.

End-to-end tests run the command in this process (``invoke``, through ``distilens.cli.main``,
the console script's entry point): a real process costs ~3.4 s of interpreter and torch
import each time. A real process is kept where the process is the point: the console
script (test_cli.py), Ctrl-C and SIGKILL (test_interrupt.py, test_kill_resume.py), torchrun
(test_ddp.py) and the comparison of the two runners (test_bad_input.py).

Finished runs are made once per session, on first use, by ``FinishedRuns.get(kind)`` (the
conftest.py fixture ``finished_runs``; the recipes are in ``RECIPES``). They are shared, so
a test only reads them; a test that writes into a run folder (explain, report, export to the
default path, --resume, --overwrite) works on ``FinishedRuns.copy(kind, tmp_path)``, a copy
of the run and of its inputs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import random
import shutil
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from distilens.cli import main
from distilens.data import load_dataset
from distilens.models import build_model


@dataclass(frozen=True)
class Result:
    """What a user sees of one command: the exit code and the two streams."""

    code: int
    stdout: str
    stderr: str


def invoke(*args: str, cwd: Path) -> Result:
    """``distilens ARGS`` run in this process from ``cwd``, as the console script runs it.

    Warnings raised meanwhile are written to stderr (a user would see them there); an
    uncaught exception gives exit code 1 and its traceback on stderr, like a real process.
    The working directory, ``sys.argv`` and torch's thread count (``runtime.threads``
    changes it) are restored afterwards.
    """
    out, err = io.StringIO(), io.StringIO()
    code, tb = 0, ""
    old_cwd, old_argv, threads = Path.cwd(), sys.argv, torch.get_num_threads()
    os.chdir(cwd)
    sys.argv = ["distilens", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001 - an uncaught exception is what a user sees as a traceback
                code, tb = 1, traceback.format_exc()
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        torch.set_num_threads(threads)
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, "") for w in caught)
    return Result(code, out.getvalue(), err.getvalue() + shown + tb)


# --------------------------------------------------------------------------- finished runs, made once


@dataclass(frozen=True)
class FinishedRun:
    """A run made by ``distilens run``: the folder the command ran in, and the run folder in it."""

    work: Path
    out: str  # the run folder, relative to ``work``
    result: Result  # what ``distilens run`` printed

    @property
    def path(self) -> Path:
        return self.work / self.out


# Every run is small: widths 8 → 4, two or three epochs, a dozen explained inputs. (The runs
# with the user's own teacher train no label-only baseline: it does not depend on the teacher.)
FAST = ["--quiet", "--set", "teacher.train.epochs=3", "--set", "distill.epochs=3", "--set", "explain.n_samples=12",
        "--set", "explain.sanity_samples=4"]

TINY = """\
name: tiny
teacher:
  args: {width: 8}
  train: {epochs: 2}
student:
  args: {width: 4}
distill:
  epochs: 2
explain:
  n_samples: 16
  sanity_samples: 4
"""


def write_loans(path: Path, n: int = 240, with_target: bool = True) -> None:
    """A loans table: numbers, a missing income every 37th row, a category with a space, a non-ASCII header."""
    rng = random.Random(0)
    lines = ["age,income,région,default" if with_target else "age,income,région"]
    for i in range(n):
        age, income = rng.randint(18, 80), rng.gauss(50, 15)
        region = rng.choice(["north", "south", "east west"])
        default = int(income < 45 or (region == "south" and age < 30))
        cells = [str(age), "" if i % 37 == 0 else f"{income:.1f}", region] + ([str(default)] if with_target else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_photos(root: Path) -> None:
    """Three classes of 12×12 images (a bright square in a different corner), odd folder names, PNG and BMP, L and RGB."""
    rng = np.random.default_rng(0)
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


POSITIVE = ["great", "wonderful", "moving", "brilliant", "superb"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "clumsy"]
FILLER = "the a film movie story plot actors scene ending music was is and with but quite very really".split()


def write_reviews(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Synthetic reviews: filler words plus one or two sentiment words that decide the label."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "label"])
        for _ in range(n):
            label = rng.choice(["good", "bad"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(4, 14))]
            for _ in range(rng.randint(1, 2)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "good" else NEGATIVE))
            w.writerow([" ".join(words).capitalize() + rng.choice([".", "!", "..."]), label])
    return path


def digits_cnn(width: int = 8) -> torch.nn.Module:
    """An untrained zoo CNN for the digits inputs, always the same weights (seed 0)."""
    torch.manual_seed(0)
    return build_model("cnn", load_dataset("builtin:digits").spec, width=width)


def write_state_dict_teacher(path: Path) -> Path:
    """The user's own teacher as they would save it: ``torch.save(model.state_dict())`` of ``digits_cnn()``."""
    torch.save(digits_cnn().state_dict(), path)
    return path


def write_torchscript_teacher(path: Path) -> Path:
    """``digits_cnn()`` traced and saved as a TorchScript archive."""
    torch.jit.save(torch.jit.trace(digits_cnn().eval(), torch.zeros(1, 1, 8, 8)), path)
    return path


TEXT_CONFIG = """\
name: text-tiny
data: {{source: "csv:{csv}", text: review, target: label, max_length: 24}}
teacher:
  arch: tiny_transformer
  args: {{dim: 16, layers: 1, heads: 2}}
  train: {{epochs: 4, lr: 0.01, batch_size: 16}}
  weights: {weights}
student:
  arch: {student}
  args: {args}
distill:
  epochs: 3
  batch_size: 16
  baseline: {baseline}
  transfer_copies: {copies}
runtime: {{threads: 1}}
"""
TEXT_STUDENTS = {
    "embedding_bag": "{dim: 8}",
    "text_cnn": "{dim: 8, maps: 4}",
    "tiny_transformer": "{dim: 8, layers: 1, heads: 2}",
}


# A recipe writes a run's inputs into its work folder and returns the command's arguments and
# the run folder (relative to the work folder).
Recipe = Callable[[Path, "FinishedRuns"], "tuple[list[str], str]"]


def _digits(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
    (work / "tiny.yaml").write_text(TINY)
    return ["run", "tiny.yaml", "--quiet"], "runs/tiny"  # the default folder: runs/<name>


def _table(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
    write_loans(work / "loans.csv")
    return ["run", "--out", "runs/loans", "--set", "name=loans", "--set", "data.source=csv:loans.csv",
            "--set", "data.target=default", "--set", "teacher.arch=mlp", "--set", "teacher.args={hidden: [64, 64]}",
            "--set", "student.arch=mlp", "--set", "student.args={hidden: [4]}", *FAST], "runs/loans"


def _imagefolder(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
    write_photos(work / "photos")
    return ["run", "--out", "runs/photos", "--set", "data.source=imagefolder:photos", "--set", "data.image_size=[8, 8]",
            "--set", "teacher.args.width=8", "--set", "student.args.width=4", *FAST], "runs/photos"


def _own_teacher(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
    """The user's own teacher as a plain state dict, distilled into a soft decision tree."""
    write_state_dict_teacher(work / "mine.pt")
    return ["run", "--out", "runs/own", "--set", "teacher.weights=mine.pt", "--set", "teacher.arch=cnn",
            "--set", "teacher.args.width=8", "--set", "student.arch=soft_tree", "--set", "student.args={depth: 3}",
            "--set", "distill.baseline=false", *FAST], "runs/own"


def _torchscript_teacher(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
    write_torchscript_teacher(work / "scripted.pt")
    return ["run", "--out", "runs/ts", "--set", "teacher.weights=scripted.pt", "--set", "teacher.trust_torchscript=true",
            "--set", "student.args.width=4", "--set", "distill.baseline=false", *FAST], "runs/ts"


def _text(student: str) -> Recipe:
    def recipe(work: Path, runs: FinishedRuns) -> tuple[list[str], str]:
        # The first student's run trains the teacher; the others load it (a distilens teacher file)
        # and share its reviews file. text_cnn also learns from 2 perturbed copies per training
        # text, labelled by the teacher.
        first = student == "embedding_bag"
        data = write_reviews(work / "reviews.csv") if first else runs.get("text:embedding_bag").work / "reviews.csv"
        weights = "null" if first else f'"{runs.get("text:embedding_bag").path / "teacher.safetensors"}"'
        (work / "text.yaml").write_text(TEXT_CONFIG.format(
            csv=data, student=student, args=TEXT_STUDENTS[student], baseline=str(first).lower(), weights=weights,
            copies=2 if student == "text_cnn" else 0,
        ))
        return ["run", "text.yaml", "--quiet", "--out", student], student

    return recipe


RECIPES: dict[str, Recipe] = {
    "digits": _digits,
    "table": _table,
    "imagefolder": _imagefolder,
    "own_teacher": _own_teacher,
    "torchscript_teacher": _torchscript_teacher,
    **{f"text:{student}": _text(student) for student in TEXT_STUDENTS},
}


class FinishedRuns:
    """Runs of ``distilens run`` made on first use and kept for the session; see the module docstring."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._runs: dict[str, FinishedRun] = {}

    def get(self, kind: str) -> FinishedRun:
        """The finished run of ``kind`` (a key of ``RECIPES``); read it, never write into it."""
        if kind not in self._runs:
            work = self._factory.mktemp(kind.replace(":", "-"))
            args, out = RECIPES[kind](work, self)
            result = invoke(*args, cwd=work)
            assert result.code == 0, result.stderr
            self._runs[kind] = FinishedRun(work, out, result)
        return self._runs[kind]

    def copy(self, kind: str, dest: Path) -> FinishedRun:
        """A copy of the run of ``kind`` and of the inputs beside it, in ``dest``/work, to write into."""
        run = self.get(kind)
        shutil.copytree(run.work, dest / "work")
        return FinishedRun(dest / "work", run.out, run.result)


