"""Hostile run folders (issue 13, families 1 and 2): a run folder is data, never code, and
distilens never deletes or takes over a folder that is not one of its runs.

Every row runs through the CLI in this process on a fresh copy of one tiny finished run
(made once per session) and asserts: exit code 2, exactly one ``error:`` line, no
traceback, no advice that weakens safety, every file byte-identical before and after,
and — for the rows that plant code — that the payload's marker file never appears.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from distilens.models.io import file_sha256
from distilens.runfolder import MARKER

from bad_input_support import write_file as _write, TINY, cli, copy_tiny_run, one_line_error, tree

RUN = "runs/tiny"
PWNED = "PWNED"  # every payload creates this file in the workspace; it must never appear
EXPLAIN = ["explain", RUN]
REPORT = ["report", RUN]
PREDICT = ["predict", RUN, "img/a/0.png"]
EXPORT = ["export", RUN, "--format", "torchscript"]
QUIET = ["--quiet", "--set", "runtime.threads=1"]


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # plants the hostile files, returns the command line
    problem: tuple[str, ...]  # what the error line must say
    payload: bool = False  # the setup planted code: its marker must never appear


# --------------------------------------------------------------------------- tampering helpers


def _json(ws: Path, name: str, change: Callable[[dict], object], run: str = RUN) -> None:
    path = ws / run / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _set(key: str, value: object) -> Callable[[dict], dict]:
    return lambda d: {**d, key: value}


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k != key}


def _weights(ws: Path, role: str, change: Callable[[dict], dict], resign: bool = True) -> None:
    """Rewrite ROLE.safetensors; ``resign``: fix the digest in ROLE.json as an attacker would."""
    path = ws / RUN / f"{role}.safetensors"
    save_file(change(load_file(str(path))), str(path))
    if resign:
        _json(ws, f"{role}.json", _set("sha256", file_sha256(path)))


def _import_arch(role: str, arch: str = "import:os:system") -> Callable[[Path], None]:
    def plant(ws: Path) -> None:
        _json(ws, f"{role}.json", lambda d: {**d, "arch": arch, "args": {"command": f"touch {ws / PWNED}"}})

    return plant


def _planted_module(ws: Path) -> None:
    (ws / RUN / "evil.py").write_text(f"open({str(ws / PWNED)!r}, 'w').close()\ndef build(**kw):\n    raise SystemExit(9)\n")
    _json(ws, "teacher.json", lambda d: {**d, "arch": "import:evil:build", "args": {}})


def _torchscript(role: str) -> Callable[[Path], None]:
    def plant(ws: Path) -> None:
        (ws / RUN / f"{role}.torchscript").write_bytes(b"PK\x03\x04 not really an archive")
        _json(ws, f"{role}.json", lambda d: {**d, "arch": "torchscript", "args": {}})
        cfg = ws / RUN / "config.yaml"  # the folder's own config "trusts" it: that must not count
        cfg.write_text(cfg.read_text().replace("trust_torchscript: false", "trust_torchscript: true"))

    return plant


def _then(*steps: Callable[[Path], None], argv: list[str]) -> Callable[[Path], list[str]]:
    def setup(ws: Path) -> list[str]:
        for step in steps:
            step(ws)
        return list(argv)

    return setup


def _resume_staging(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """runs/.tiny.partial: an interrupted copy of the run (no teacher checkpoint), then ``change``."""
    def plant(ws: Path) -> None:
        staging = ws / "runs" / ".tiny.partial"
        shutil.copytree(ws / RUN, staging)
        (staging / "checkpoints" / "teacher.pt").unlink()
        (staging / "checkpoints" / "teacher.pt.sha256").unlink()
        change(staging)

    return plant


def _staging_json(role: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda staging: (staging / f"{role}.json").write_text(
        json.dumps(change(json.loads((staging / f"{role}.json").read_text()))))


def _mkdir(rel: str) -> Callable[[Path], None]:
    return lambda ws: (ws / rel).mkdir(parents=True, exist_ok=True)


def _symlink(rel: str, target: str) -> Callable[[Path], None]:
    return lambda ws: os.symlink(target, ws / rel)


DEEP = "[" * 100_000 + "]" * 100_000
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
NAN_STUDENT = lambda s: {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in s.items()}
RUN_TINY = ["run", "tiny.yaml", *QUIET]
# TINY on a small table with MLPs: a whole run takes a few seconds.
TABLE = ["--set", "data.source=builtin:breast_cancer", "--set", "teacher.arch=mlp", "--set", "teacher.args={}",
         "--set", "student.arch=mlp", "--set", "student.args={}", "--set", "explain.methods=[saliency]"]

# --------------------------------------------------------------------------- family 1: a run folder is data, never code

CODE = [
    Case("import-teacher-explain", _then(_import_arch("teacher"), argv=EXPLAIN), ("import:os:system", "--allow-import"), True),
    Case("import-student-predict", _then(_import_arch("student"), argv=PREDICT), ("import:os:system", "--allow-import"), True),
    Case("import-student-export", _then(_import_arch("student"), argv=EXPORT), ("runs Python code", "--allow-import"), True),
    Case("import-subprocess-explain", _then(_import_arch("teacher", "import:subprocess:run"), argv=EXPLAIN),
         ("import:subprocess:run", "--allow-import"), True),
    Case("import-planted-module", _then(_planted_module, argv=EXPLAIN), ("import:evil:build", "--allow-import"), True),
    Case("torchscript-teacher-explain", _then(_torchscript("teacher"), argv=EXPLAIN),
         ("TorchScript", "--trust-torchscript", "config does not count"), True),
    Case("torchscript-student-predict", _then(_torchscript("student"), argv=PREDICT), ("--trust-torchscript",), True),
    Case("torchscript-student-export", _then(_torchscript("student"), argv=EXPORT), ("--trust-torchscript",), True),
    Case("import-teacher-resume", _then(_resume_staging(_staging_json("teacher", lambda d: {
        **d, "arch": "import:os:system", "args": {"command": "touch PWNED"}})), argv=[*RUN_TINY, "--resume"]),
        ("import:os:system", "does not run code"), True),
]

# ---- model .json files that are incomplete, malformed or forged, and weights that do not match

MODEL_FILES = [
    Case("json-list", _then(lambda ws: _json(ws, "student.json", lambda d: [d]), argv=PREDICT), ("is a JSON list",)),
    Case("json-no-digest", _then(lambda ws: _weights(ws, "student", NAN_STUDENT, resign=False),
                                 lambda ws: _json(ws, "student.json", _drop("sha256")), argv=PREDICT),
         ("lacks its SHA-256 digest",)),
    Case("json-bad-digest", _then(lambda ws: _json(ws, "student.json", _set("sha256", "nan")), argv=PREDICT),
         ("not a SHA-256 digest",)),
    Case("json-no-arch", _then(lambda ws: _json(ws, "student.json", _drop("arch")), argv=PREDICT), ("lacks 'arch'",)),
    Case("json-args-list", _then(lambda ws: _json(ws, "teacher.json", _set("args", [1])), argv=EXPLAIN),
         ("'args' is a list, not a dict",)),
    Case("json-no-spec", _then(lambda ws: _json(ws, "student.json", _drop("input_spec")), argv=EXPORT),
         ("lacks 'input_spec'",)),
    Case("json-spec-incomplete", _then(lambda ws: _json(ws, "student.json", _set("input_spec", {"kind": "image"})),
                                       argv=PREDICT), ("'input_spec' is incomplete",)),
    Case("json-spec-huge", _then(lambda ws: _json(ws, "student.json", lambda d: {
        **d, "input_spec": {**d["input_spec"], "shape": [3, 100000, 100000]}}), argv=PREDICT), ("larger than any image",)),
    Case("json-spec-zero-std", _then(lambda ws: _json(ws, "student.json", lambda d: {
        **d, "input_spec": {**d["input_spec"], "std": [0.0]}}), argv=PREDICT), ("std that is not positive",)),
    Case("json-wrong-format", _then(lambda ws: _json(ws, "teacher.json", _set("format", "other/1")), argv=EXPLAIN),
         ("not a distilens model description",)),
    Case("json-truncated", _then(lambda ws: (ws / RUN / "student.json").write_text('{"format": "distilens-model/1", "ar'),
                                 argv=PREDICT), ("student.json' is not valid JSON",)),
    Case("json-deep", _then(_write(f"{RUN}/student.json", DEEP), argv=PREDICT), ("nested more than 100 deep",)),
    Case("json-binary", _then(_write(f"{RUN}/student.json", b"\xff\xfe\x00garbage"), argv=PREDICT), ("not UTF-8",)),
    Case("weights-tampered", _then(lambda ws: _weights(ws, "student", NAN_STUDENT, resign=False), argv=EXPORT),
         ("does not match the checksum",)),
    Case("weights-cut-short", _then(lambda ws: (ws / RUN / "student.safetensors").write_bytes(
        (ws / RUN / "student.safetensors").read_bytes()[:100]), argv=PREDICT), ("not a complete safetensors file",)),
    # A forger who re-signs: the digest matches, the architecture must still fit the file,
    # checked on a meta-device copy before anything is allocated (this MLP would take 256 TB).
    Case("forged-huge-args", _then(lambda ws: _json(ws, "student.json", lambda d: {
        **d, "arch": "mlp", "args": {"hidden": [10**12]}}), argv=PREDICT), ("do not fit the architecture",)),
    Case("forged-complex-weights", _then(lambda ws: _weights(ws, "student", lambda s: {
        k: v.to(torch.complex64) if k == "head.weight" else v for k, v in s.items()}), argv=PREDICT),
        ("'head.weight' holds complex64 where the model holds float32",)),
    Case("forged-int-weights", _then(lambda ws: _weights(ws, "student", lambda s: {
        k: v.to(torch.int32) if k == "head.bias" else v for k, v in s.items()}), argv=PREDICT), ("holds int32",)),
    Case("forged-unknown-arch", _then(lambda ws: _json(ws, "student.json", _set("arch", "cnnn")), argv=PREDICT),
         ("unknown model 'cnnn'",)),
]

# ---- the folder's other files: config.yaml, metrics.json, text.json, preprocessing.json

FOLDER_FILES = [
    Case("config-alias-bomb", _then(_write(f"{RUN}/config.yaml", BOMB), argv=REPORT), ("more than 100,000 values",)),
    Case("config-alias-bomb-explain", _then(_write(f"{RUN}/config.yaml", BOMB), argv=EXPLAIN), ("more than 100,000",)),
    Case("config-deep", _then(_write(f"{RUN}/config.yaml", "a: " + "[" * 20000 + "]" * 20000), argv=REPORT),
         ("nested more than 100 deep",)),
    Case("config-binary", _then(_write(f"{RUN}/config.yaml", bytes(range(256))), argv=EXPLAIN), ("not UTF-8",)),
    Case("config-not-mapping", _then(_write(f"{RUN}/config.yaml", "- a\n"), argv=PREDICT), ("not a config mapping",)),
    Case("metrics-truncated", _then(lambda ws: (ws / RUN / "metrics.json").write_text(
        (ws / RUN / "metrics.json").read_text()[:200]), argv=REPORT), ("metrics.json' is not valid JSON", "--overwrite")),
    Case("metrics-list", _then(_write(f"{RUN}/metrics.json", "[1, 2]"), argv=REPORT), ("is a JSON list, not an object",)),
    Case("metrics-deep", _then(_write(f"{RUN}/metrics.json", DEEP), argv=REPORT), ("nested more than 100 deep",)),
    Case("text-json-deep", _then(_write(f"{RUN}/explanations/text.json", DEEP), argv=REPORT), ("nested more than",)),
    Case("preprocessing-garbage", _then(_write(f"{RUN}/preprocessing.json", '{"x": 1}'), argv=PREDICT),
         ("is not a distilens preprocessing description",)),
    Case("preprocessing-incomplete", _then(_write(f"{RUN}/preprocessing.json", '{"format": "distilens-table-preprocessing/1"}'),
                                           argv=PREDICT), ("preprocessing.json' is incomplete or damaged",)),
    Case("teacher-json-list-report", _then(_write(f"{RUN}/teacher.json", "[]"), argv=REPORT), ("is a JSON list",)),
    Case("tokenizer-json-deep", _then(_write(f"{RUN}/tokenizer.json", DEEP), argv=PREDICT), ("nested more than",)),
    Case("history-huge-cell", _then(_write(f"{RUN}/history.csv", "model,epoch\nstudent," + "9" * 200_000 + "\n"),
                                    argv=REPORT), ("history.csv' line 2", "longer than 131,072")),
    Case("history-not-a-number", _then(_write(f"{RUN}/history.csv", "model,epoch,loss\nstudent,1,oops\n"), argv=REPORT),
         ("'oops' in column 'loss' is not a number",)),
    Case("predictions-cut-short", _then(lambda ws: (ws / RUN / "predictions.safetensors").write_bytes(
        (ws / RUN / "predictions.safetensors").read_bytes()[:5000]), argv=REPORT), ("not a complete safetensors file",)),
    Case("explanations-header-bomb", _then(_write(f"{RUN}/explanations.safetensors", (10**12).to_bytes(8, "little")),
                                           argv=REPORT), ("not a complete safetensors file",)),
    Case("heatmaps-symlink-predict", _then(_symlink(f"{RUN}/heatmaps", "../../img"), argv=[*PREDICT, "--explain"]),
         ("heatmaps' is a symlink",)),
    Case("checkpoint-digest-deep-resume", _then(_resume_staging(lambda s: (s / "checkpoints" / "student.pt.sha256").write_text(
        DEEP)), argv=[*RUN_TINY, "--resume"]), ("student.pt.sha256", "nested more than")),
    Case("staging-symlink-inside-resume", _then(_resume_staging(lambda s: os.symlink("/etc", s / "checkpoints" / "x")),
                                                argv=[*RUN_TINY, "--resume"]), ("is in the way", "checkpoints/x")),
]

# --------------------------------------------------------------------------- family 2: never delete or take over

OVERWRITE = ["--overwrite"]
TAKEOVER = [
    Case("overwrite-project", _then(_write("project/README.md", "mine\n"), _write("project/src/main.py", "print(1)\n"),
                                    argv=[*RUN_TINY, "--out", "project", *OVERWRITE]),
         ("is not a distilens run folder", "README.md", "never replaces")),
    Case("overwrite-dot", _then(argv=[*RUN_TINY, "--out", ".", *OVERWRITE]), ("is not a distilens run folder",)),
    Case("overwrite-images", _then(argv=[*RUN_TINY, "--out", "img", *OVERWRITE]), ("is not a distilens run folder",
                                                                                    "a/0.png")),
    Case("overwrite-images-no-flag", _then(argv=[*RUN_TINY, "--out", "img"]), ("is not a distilens run folder",)),
    Case("overwrite-run-with-user-file", _then(_write(f"{RUN}/notes.txt", "mine\n"),
                                               argv=[*RUN_TINY, "--out", RUN, *OVERWRITE]), ("notes.txt",)),
    Case("overwrite-run-with-symlink", _then(_symlink(f"{RUN}/photos", "../../img"),
                                             argv=[*RUN_TINY, "--out", RUN, *OVERWRITE]), ("photos",)),
    Case("overwrite-legacy-with-user-file", _then(lambda ws: (ws / RUN / MARKER).unlink(), _write(f"{RUN}/todo.md", "x"),
                                                  argv=[*RUN_TINY, "--out", RUN, *OVERWRITE]), ("todo.md",)),
    Case("overwrite-foreign-config", _then(_write("svc/config.yaml", "services: {web: {image: nginx}}\n"),
                                           argv=[*RUN_TINY, "--out", "svc", *OVERWRITE]),
         ("no .distilens-run marker and no readable config.yaml",)),
    Case("overwrite-forged-marker", _then(_write("docs/.distilens-run", '{"format": "other"}'), _write("docs/a.md", "x"),
                                          argv=[*RUN_TINY, "--out", "docs", *OVERWRITE]), ("a.md",)),
    Case("resume-images", _then(argv=[*RUN_TINY, "--out", "img", "--resume"]),
         ("no earlier run", "distilens did not write", "run without --resume")),
    Case("resume-empty-folder", _then(_mkdir("empty"), argv=[*RUN_TINY, "--out", "empty", "--resume"]), ("no earlier run",)),
    Case("resume-binary-config", _then(_resume_staging(lambda s: (s / "config.yaml").write_bytes(b"\x00\xff\xfe\x80")),
                                       argv=[*RUN_TINY, "--resume"]), ("config.yaml", "not UTF-8")),
    Case("staging-is-user-folder", _then(_write("runs/.tiny2.partial/thesis.tex", "x"), argv=[*RUN_TINY, "--out", "runs/tiny2"]),
         ("is in the way", "thesis.tex")),
    Case("staging-is-symlink", _then(_symlink("runs/.tiny2.partial", "../img"), argv=[*RUN_TINY, "--out", "runs/tiny2"]),
         ("is in the way",)),
    Case("lock-is-folder", _then(_mkdir("runs/.tiny2.lock"), argv=[*RUN_TINY, "--out", "runs/tiny2"]),
         ("cannot create the lock file",)),
    Case("lock-is-symlink", _then(_symlink("runs/.tiny2.lock", "../img/a/0.png"), argv=[*RUN_TINY, "--out", "runs/tiny2"]),
         ("is a symlink",)),
    Case("out-symlink-loop", _then(_symlink("loop", "loop"), argv=[*RUN_TINY, "--out", "loop/run"]),
         ("cannot be resolved",)),
    Case("out-root", _then(argv=[*RUN_TINY, "--out", "/", *OVERWRITE]), ("root of the file system",)),
    Case("out-symlink-to-images", _then(_symlink("link", "img"), argv=[*RUN_TINY, "--out", "link", *OVERWRITE]),
         ("is not a distilens run folder",)),
]

CASES = CODE + MODEL_FILES + FOLDER_FILES + TAKEOVER


def _images(root: Path) -> None:
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            a = np.full((8, 8), 30 * c + i, dtype=np.uint8)
            Image.fromarray(a).save(root / name / f"{i}.png")


@pytest.fixture
def ws(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace: tiny.yaml, a copy of the tiny finished run at runs/tiny, images at img/."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    copy_tiny_run(tmp_path_factory, tmp_path / RUN)
    _images(tmp_path / "img")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _planted_jit_load(*args: object, **kwargs: object) -> None:
    Path(PWNED).touch()
    raise RuntimeError("a planted TorchScript archive ran")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_run_folder(ws: Path, capfd, monkeypatch, case: Case) -> None:
    monkeypatch.setattr(torch.jit, "load", _planted_jit_load)  # loading any TorchScript plants the marker
    monkeypatch.syspath_prepend(str(ws / RUN))  # a module planted in the run folder would be importable
    argv = case.setup(ws)
    before = tree(ws)
    line = one_line_error(cli(*argv, capfd=capfd))
    for words in case.problem:
        assert words in line, line
    assert not (ws / PWNED).exists(), "the run folder's code ran"
    assert tree(ws) == before, "files were changed, added or removed"


def test_catalogue_covers_each_family() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CODE) >= 9 and len(MODEL_FILES) >= 15 and len(FOLDER_FILES) >= 10 and len(TAKEOVER) >= 15


def test_report_never_builds_a_model_named_by_the_folder(ws: Path, capfd, monkeypatch) -> None:
    """``report`` reads files only: an import path in teacher.json is left alone (exit 0, no code run)."""
    _import_arch("teacher")(ws)
    _import_arch("student")(ws)
    result = cli(*REPORT, capfd=capfd)
    assert result.code == 0, result.stderr
    assert not (ws / PWNED).exists()


def test_the_opt_in_on_the_command_line_builds_an_import_path_teacher(ws: Path, capfd, monkeypatch) -> None:
    """With --allow-import the folder's import path is built (here: the zoo's own cnn factory, so the weights fit)."""
    (ws / "myzoo.py").write_text("from distilens.models import build_model\n"
                                 "def cnn(spec, width):\n    return build_model('cnn', spec, width=width)\n")
    monkeypatch.syspath_prepend(str(ws))
    _json(ws, "teacher.json", _set("arch", "import:myzoo:cnn"))
    refused = one_line_error(cli(*EXPLAIN, capfd=capfd))
    assert "--allow-import" in refused
    result = cli(*EXPLAIN, "--allow-import", capfd=capfd)
    assert result.code == 0, result.stderr


def test_a_run_folder_made_before_markers_is_still_replaced_with_overwrite(ws: Path, capfd) -> None:
    """No marker, only the files a run writes: --overwrite accepts it (the data error comes after the check)."""
    (ws / RUN / MARKER).unlink()
    before = tree(ws)
    line = one_line_error(cli(*RUN_TINY, "--overwrite", "--set", "data.source=builtin:nope", capfd=capfd))
    assert "unknown dataset 'nope'" in line
    assert tree(ws) == before


# --------------------------------------------------------------------------- locks and a full disk


def test_a_second_run_into_a_locked_folder_names_the_first(ws: Path, capfd) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, os, sys, time\n"
        "fd = os.open('runs/.tiny.lock', os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, json.dumps({'pid': os.getpid(), 'started': 'now', 'command': 'distilens run first.yaml'}).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], cwd=ws, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(ws)
        line = one_line_error(cli(*RUN_TINY, "--overwrite", capfd=capfd))
        assert f"in use by another distilens run (pid {holder.pid}" in line and "distilens run first.yaml" in line, line
        assert tree(ws) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_and_removed(ws: Path, capfd) -> None:
    """A lock file whose process is gone (no flock held) does not block; the run's own lock is removed after it."""
    (ws / "runs" / ".tiny.lock").write_text(json.dumps({"pid": 999999, "started": "long ago", "command": "x"}))
    line = one_line_error(cli(*RUN_TINY, "--overwrite", "--set", "data.source=builtin:nope", capfd=capfd))
    assert "unknown dataset 'nope'" in line
    assert not (ws / "runs" / ".tiny.lock").exists()


def _fail_writes_from(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The n-th and later fsyncs of distilens.io raise ENOSPC: the disk fills up during the run."""
    import errno

    import distilens.io as dio

    calls = {"n": 0}
    real = dio.os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] >= n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(dio.os, "fsync", fsync)


@pytest.mark.parametrize("nth", [1, 2], ids=["marker", "config"])
def test_a_full_disk_is_one_line_and_keeps_the_earlier_run(ws: Path, capfd, monkeypatch, nth: int) -> None:
    before = tree(ws)
    _fail_writes_from(nth, monkeypatch)
    line = one_line_error(cli(*RUN_TINY, "--overwrite", capfd=capfd))
    assert line.startswith("error: no space left on /") and "while writing '" in line, line
    assert "runs/.tiny.partial" in line
    assert tree(ws) == before, "the staging folder was left behind or the earlier run changed"


def test_a_full_disk_outside_the_atomic_writes_is_one_line_too(ws: Path, capfd, monkeypatch) -> None:
    import errno

    from distilens.modalities.base import Modality

    def full(self: Modality, bundle: object, folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "preprocessing.json"))

    monkeypatch.setattr(Modality, "save_preprocessing", full)  # a write that is not an atomic_write
    before = tree(ws)
    line = one_line_error(cli(*RUN_TINY, "--overwrite", capfd=capfd))
    assert "no space left on" in line and "preprocessing.json" in line, line
    assert tree(ws) == before


# --------------------------------------------------------------------------- SIGTERM, a real process


@pytest.mark.slow
def test_sigterm_stops_after_the_checkpoint_and_resumes(ws: Path, capfd) -> None:
    """SIGTERM during training: the epoch's checkpoint is written, exit 143, one resume line; --resume finishes."""
    import signal

    table = [*TABLE, "--set", "distill.epochs=3", "--set", "distill.batch_size=1"]  # epochs of ~1 s
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "distilens", "run", "tiny.yaml", "--out", "runs/term", *QUIET, *table],
                            cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = ws / "runs" / ".term.partial" / "checkpoints" / "student.pt.sha256"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    line = one_line_error(cli(*RUN_TINY, "--out", "runs/term", *table, capfd=capfd))  # the same folder, meanwhile
    assert f"in use by another distilens run (pid {proc.pid}" in line, line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted after epoch "), err
    assert "resume with: distilens run tiny.yaml --out runs/term" in err
    assert (ws / "runs" / ".term.partial" / "checkpoints" / "student.pt").is_file()
    assert not (ws / "runs" / ".term.lock").exists()
    resumed = cli(*RUN_TINY, "--out", "runs/term", *table, "--resume", capfd=capfd)
    assert resumed.code == 0, resumed.stderr
    assert (ws / "runs" / "term" / MARKER).is_file() and not (ws / "runs" / ".term.partial").exists()


def test_a_symlinked_out_is_resolved_and_replaced_cleanly(ws: Path, capfd) -> None:
    """--out LINK --overwrite, LINK -> a run folder: written where the link points, no .old-* left, link intact."""
    table = TABLE
    os.symlink("runs/tiny", ws / "latest")
    result = cli(*RUN_TINY, "--out", "latest", "--overwrite", *table, capfd=capfd)
    assert result.code == 0, result.stderr
    assert (ws / "latest").is_symlink() and json.loads((ws / RUN / "student.json").read_text())["arch"] == "mlp"
    assert sorted(p.name for p in (ws / "runs").iterdir()) == ["tiny"]
