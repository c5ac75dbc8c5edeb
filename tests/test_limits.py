"""The bounded readers (limits.py), the unsafe-advice filter, CSV-injection quoting, the
run-folder marker and lock, and SIGTERM, one by one (the CLI-level cases are in test_hostile_*.py)."""

from __future__ import annotations

import errno
import io
import json
import pickle
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from distilens.config import DEFAULT_MEMORY_BUDGET
from distilens.data.imagefolder import DEFAULT_MAX_BYTES
from distilens.errors import ConfigError, DataError, DiskFullError, DistilensError, RunFolderError
from distilens.interrupt import Interrupted, deferred_interrupts, stop_signal
from distilens.io import spreadsheet_safe, write_error
from distilens.limits import MAX_CSV_FIELD, csv_reader, load_yaml, loads_json, open_image, read_json
from distilens.runfolder import MARKER, RUN_FILES, RunFolder, is_run_folder

from bad_input_support import cli, finished_tiny_run, one_line_error, png_claiming


def test_yaml_within_the_limits_loads_as_safe_load() -> None:
    text = "a: &x {b: [1, 2]}\nc: *x\nd: [[[1]]]\n"
    assert load_yaml(text, "c.yaml") == {"a": {"b": [1, 2]}, "c": {"b": [1, 2]}, "d": [[[1]]]}


@pytest.mark.parametrize("text, problem", [
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcd", "bcde")), "more than 100,000 values"),
    ("x: " + "[" * 101 + "]" * 101, "nested more than 100 deep"),
    ("x: " + "[" * 20000 + "]" * 20000, "nested more than 100 deep"),
    ("&a [*a]", "refers to the list or mapping it is inside of"),
    ("&a {k: *a}", "refers to the list or mapping it is inside of"),
    ("x: " + "1" * 5000, "write a shorter value"),
    ("x: [oops", "YAML syntax error"),
    ("x: *nowhere", "YAML syntax error"),
])
def test_yaml_bombs_are_one_line_config_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        load_yaml(text, "c.yaml")
    assert "\n" not in str(info.value)


def test_json_depth_and_syntax() -> None:
    assert loads_json("[" * 100 + "]" * 100, "x") is not None
    for deep in ("[" * 101 + "]" * 101, "[" * 100_000 + "]" * 100_000, '{"a": ' * 150 + "1" + "}" * 150):
        with pytest.raises(DataError, match="nested more than 100 deep"):
            loads_json(deep, "x")
    with pytest.raises(DataError, match=r"'f.json' is not valid JSON \(Expecting"):
        loads_json('{"a": ', "'f.json'")


def test_read_json_refuses_files_over_its_size(tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(RunFolderError, match="over the limit"):
        read_json(tmp_path / "big.json", error=RunFolderError, max_bytes=100)


def test_csv_reader_names_the_line_of_a_huge_cell() -> None:
    lines = ["a,b\n", "1,2\n", '"' + "x" * (MAX_CSV_FIELD + 1) + '",3\n']
    reader = csv_reader(lines, "'t.csv'")
    assert next(reader) == ["a", "b"] and next(reader) == ["1", "2"] and reader.line_num == 2
    with pytest.raises(DataError, match=r"'t.csv' line 3: a cell is longer than 131,072 characters"):
        next(reader)


@pytest.mark.parametrize("side", [50_000, 10_000])
def test_open_image_refuses_decompression_bombs_before_decoding(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    with pytest.raises(Image.DecompressionBombError):
        with open_image(path):
            pass
    path.write_bytes(png_claiming(8, 8))
    with open_image(path) as img:
        assert img.size == (8, 8)


def test_torch_advice_to_unpickle_never_reaches_an_error_line() -> None:
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    with pytest.raises(pickle.UnpicklingError) as info:
        torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    for detail in (str(info.value), str(info.value).splitlines()[0]):
        line = str(DistilensError(f"checkpoint 'x.pt' cannot be read ({detail}); delete it"))
        assert "weights_only" not in line and "safe_globals" not in line and "trusted source" not in line, line
        assert "checkpoint 'x.pt' cannot be read" in line and "delete it" in line
        assert "re-save the weights as a state dict" in line
    assert str(DistilensError("plain; fix it")) == "plain; fix it"
    assert "trust_remote_code" not in str(DistilensError("load it with trust_remote_code=True; or not"))


def test_spreadsheet_safe() -> None:
    for cell in ("=1+2", "+1", "-1", "@A1", "\tx", "\rx"):
        assert spreadsheet_safe(cell) == "'" + cell
    assert spreadsheet_safe("cat") == "cat" and spreadsheet_safe("") == ""


def test_disk_full_names_the_device_and_the_file(tmp_path: Path) -> None:
    err = write_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a.bin")
    assert isinstance(err, DiskFullError)
    assert str(err).startswith("no space left on /") and f"while writing '{tmp_path / 'a.bin'}'" in str(err)
    assert write_error(OSError(errno.EIO, "I/O error"), tmp_path) is None  # not the user's to fix: a bug report


def test_the_memory_budget_default_is_the_data_readers() -> None:
    assert DEFAULT_MEMORY_BUDGET == DEFAULT_MAX_BYTES


def test_every_file_a_run_writes_is_a_known_run_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    """RUN_FILES lets folders made before markers be recognised: it must name every file a run writes."""
    run = finished_tiny_run(tmp_path_factory)
    files = [p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()]
    assert MARKER in files
    assert [f for f in files if not RUN_FILES.fullmatch(f)] == []
    assert is_run_folder(run)
    manifest = json.loads((run / MARKER).read_text())
    assert manifest["format"] == "distilens-run/1" and manifest["state"] == "finished"
    assert sorted(manifest["files"]) == sorted(files)


def test_a_second_prepare_in_one_process_takes_over_its_own_stale_lock(tmp_path: Path) -> None:
    first = RunFolder.prepare(tmp_path / "r", overwrite=False, resume=False, config_yaml="")
    assert (tmp_path / ".r.lock").is_file()
    second = RunFolder.prepare(tmp_path / "r", overwrite=False, resume=False, config_yaml="")
    second.release()
    first.release()
    assert not (tmp_path / ".r.lock").exists()


def test_sigterm_is_deferred_to_the_epoch_boundary_like_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with deferred_interrupts():
            signal.raise_signal(signal.SIGTERM)  # only a flag
            from distilens.interrupt import check_interrupt

            check_interrupt("student", 4, 9)
    assert (info.value.role, info.value.epoch) == ("student", 4)
    assert stop_signal() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_outside_training_exits_143_with_one_line(monkeypatch, capfd) -> None:
    import distilens.commands as commands

    def report_run(path: object, command: object = None) -> None:
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(commands, "report_run", report_run)
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    try:
        result = cli("report", "anywhere", capfd=capfd)
    finally:
        signal.signal(signal.SIGINT, before[0])  # the CLI ignores further signals on its way out
    assert result.code == 143, result.stderr
    assert result.stderr.splitlines() == ["interrupted; run the same command again"]
    assert signal.getsignal(signal.SIGTERM) is before[1]


def test_error_messages_name_only_config_keys_that_exist() -> None:
    """Every ``section.key`` (and every key after "set") in a raised error or a warning is a key of the config."""
    import ast
    import re

    from distilens.config import RunConfig
    from distilens.config.files import _nested_model

    dotted = re.compile(r"(?<![\w./:-])(data|teacher|student|distill|explain|report|runtime)\.([A-Za-z_]+(?:\.[A-Za-z_]+)*)")
    after_set = re.compile(r"\bset ([a-z]+_[a-z_]+)\b(?![.(])")  # "set grad_clip": a key named alone
    files = {"html", "json", "yaml", "csv", "py", "safetensors", "pt", "onnx", "torchscript", "sha256", "png"}
    sections = set(RunConfig.model_fields)

    def exists(parts: list[str]) -> bool:
        model = RunConfig
        for part in parts:
            if model is None:
                return True  # inside a model's args or a loss's options: free
            if part not in model.model_fields:
                return model.model_config.get("extra") != "forbid"
            model = _nested_model(model.model_fields[part].annotation)
        return True

    wrong = []
    for path in Path(__file__).parents[1].joinpath("src", "distilens").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                messages = [node.exc]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "warn":
                messages = node.args[:1]
            else:
                continue
            for text in (c.value for m in messages for c in ast.walk(m) if isinstance(c, ast.Constant) and isinstance(c.value, str)):
                for hit in dotted.finditer(text):
                    parts = [hit.group(1), *hit.group(2).split(".")]
                    if parts[-1] not in files and not exists(parts):
                        wrong.append(f"{path.name}:{node.lineno}: {hit.group(0)}")
                for hit in after_set.finditer(text):
                    if hit.group(1) not in sections:
                        wrong.append(f"{path.name}:{node.lineno}: set {hit.group(1)}")
    assert wrong == []


def test_the_one_line_helper_rejects_tracebacks() -> None:
    from bad_input_support import Result

    with pytest.raises(AssertionError):
        one_line_error(Result(2, "", "error: a\nTraceback"))
