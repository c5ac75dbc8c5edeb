"""What the bad-input and hostile-input tests share: the in-process CLI runner, file hashes,
and one tiny finished run made once per test session and copied where a test needs it.

The CLI runs in this process (``distilens.cli.main``, the console script's entry point) so
that a case takes milliseconds; ``test_bad_input.test_in_process_runner_matches_a_real_process``
shows that it gives the same exit code and stderr as a real process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import traceback
import zlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from distilens.cli import main

TINY = """\
name: tiny
teacher:
  args: {width: 8}
  train: {epochs: 1}
student:
  args: {width: 4}
distill:
  epochs: 1
  baseline: false
explain:
  methods: [saliency]
  n_samples: 8
  sanity: false
runtime:
  threads: 1
"""

# Lines a library may print that advise weakening safety; no output of distilens may carry them.
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False", "add_safe_globals", "trust_remote_code=True")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli(*args: str, capfd: pytest.CaptureFixture[str]) -> Result:
    """``distilens ARGS`` in this process: exit code and output as the user sees them."""
    capfd.readouterr()
    code, tb = 0, ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - an uncaught exception is what a user sees as a traceback
            code, tb = 1, traceback.format_exc()
    out, err = capfd.readouterr()
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, "") for w in caught)
    return Result(code, out, err + shown + tb)


def one_line_error(result: Result) -> str:
    """The single ``error: ...`` line of a refused command (asserting exit 2, no traceback, no unsafe advice)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not any(a in lines[0] for a in UNSAFE_ADVICE), lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` (symlinks not followed) with the SHA-256 of each file ('' otherwise)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            plain = p.is_file() and not p.is_symlink()
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if plain else ""
    return out


_TINY_RUN: dict[str, Path] = {}


def finished_tiny_run(factory: pytest.TempPathFactory) -> Path:
    """A finished run of :data:`TINY` (digits, one epoch each), made once per session: copy it, never change it."""
    if "run" not in _TINY_RUN:
        work = factory.mktemp("tiny-run")
        (work / "tiny.yaml").write_text(TINY)
        old = Path.cwd()
        os.chdir(work)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                main(["run", "tiny.yaml", "--quiet"])
        except SystemExit as exc:
            assert not exc.code, "the tiny run failed"
        finally:
            os.chdir(old)
        assert (work / "runs" / "tiny" / "student.safetensors").is_file()
        _TINY_RUN["run"] = work / "runs" / "tiny"
    return _TINY_RUN["run"]


def copy_tiny_run(factory: pytest.TempPathFactory, dest: Path) -> Path:
    """A copy of the session's tiny run at ``dest``."""
    shutil.copytree(finished_tiny_run(factory), dest, symlinks=True)
    return dest


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header announcing width × height grey pixels, with one compressed row: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_file(rel: str, content: str | bytes) -> Callable[[Path], None]:
    """A setup step: write ``content`` at ``rel`` under the workspace (folders made as needed)."""
    def write(ws: Path) -> None:
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return write
