"""Every command block of README.md runs as written, in a fresh folder, in the README's order.

The ``sh`` blocks are extracted from README.md; each ``distilens`` line runs through the CLI
in one temporary folder (so the examples meet each other's run folders as a user's would),
with the data they name made first: loans.csv, photos/ and my.yaml (README's own config
block). To keep the test minutes long rather than hours, every ``distilens run`` gets a few
``--set`` overrides appended (one epoch each, 8 explained inputs, no sanity check); nothing
else is changed. ``make demo`` is what the Makefile runs (``distilens run``); the lines left
out are listed in ``NOT_RUN`` with the reason. The printed summary must have the shape of the
README's sample output.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from e2e import invoke, write_loans, write_photos

README = Path(__file__).resolve().parent.parent / "README.md"
FAST = ["--set", "teacher.train.epochs=1", "--set", "distill.epochs=1", "--set", "explain.n_samples=8",
        "--set", "explain.sanity=false"]
#: Lines of README's sh blocks not run here, with the reason.
NOT_RUN = {
    "make test": "it is this test suite",
    "torchrun": "needs several processes (tests/test_ddp.py runs torchrun)",
    "teacher.weights=hf:./my-bert": "needs a fine-tuned Hugging Face model on disk",
    "teacher.arch=minilm": "needs the MiniLM weights (tests/test_hf_teacher.py)",
}
#: The lines a run's summary prints, as in README's sample output.
SUMMARY = [
    r"teacher\s+\d+\.\d%\s+–\s+[\d,]+\s+\d+\.\d\d",
    r"student\s+\d+\.\d%\s+\d+\.\d%\s+[\d,]+\s+\d+\.\d\d",
    r"compression: [\d.]+× fewer parameters, [\d.]+× fewer FLOPs; (?:[\d.]+× faster|no clear speed-up) at batch 1",
    r"explanations \(\w+, \d+ test inputs\): spearman -?\d\.\d\d",
    r"report: \S+/report\.html",
]


def readme_commands(text: str) -> list[str]:
    """The command lines of the ``sh`` blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_readme_lists_its_commands() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert commands[0].startswith("make demo") and any("csv:loans.csv" in c for c in commands)


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width; one line per summary line here
    text = README.read_text(encoding="utf-8")
    write_loans(tmp_path / "loans.csv")
    write_photos(tmp_path / "photos")
    my_yaml = re.search(r"A config file is YAML.*?```yaml\n(.*?)```", text, re.S)
    assert my_yaml, "README's config block"
    (tmp_path / "my.yaml").write_text(my_yaml.group(1), encoding="utf-8")
    ran = []
    for line in readme_commands(text):
        if any(key in line for key in NOT_RUN):
            continue
        args = shlex.split(line)
        if args[:2] == ["make", "demo"]:
            args = ["distilens", "run"]
        assert args[0] == "distilens", f"README command not run by this test: {line}"
        args = args[1:] + (FAST if args[1] == "run" else [])
        result = invoke(*args, cwd=tmp_path)
        assert result.code == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        out = re.sub(r"\s+", " ", re.sub("[\u2500-\u257f]", " ", result.stdout))  # the table's box lines dropped
        for shape in SUMMARY if args[0] == "run" else []:
            assert re.search(shape, out), f"{line}: no line like {shape!r} in\n{result.stdout}"
        ran.append(line)
    assert len(ran) >= 5, ran
    for name in ("digits-demo", "loans", "photos"):  # runs named after their data
        assert (tmp_path / "runs" / name / "report.html").is_file(), name
    assert (tmp_path / "runs" / "try-2" / "report.html").is_file()
