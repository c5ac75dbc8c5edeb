"""The teacher's explanations kept by content (explain/teacher_memo.py): same numbers, computed once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distilens.explain import TeacherMemo, explain_models
from distilens.models import build_model
from e2e import TINY, invoke


def _memo(teacher: torch.nn.Module, folder: Path) -> TeacherMemo:
    return TeacherMemo(teacher, directories=[folder], save_to=[folder])


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value() if callable(value) else value

    return compute, calls


def test_an_entry_is_computed_once_and_read_back_by_a_new_memo(cnn_pair, tmp_path) -> None:
    teacher, _ = cnn_pair
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    compute, calls = _counting(lambda: torch.randn(4, 1, 8, 8))
    first = _memo(teacher, tmp_path).tensor("maps", x, y, {"method": "saliency"}, compute)
    memo = _memo(teacher, tmp_path)
    again = memo.tensor("maps", x, y, {"method": "saliency"}, compute)
    assert len(calls) == 1 and torch.equal(first, again)
    assert (memo.hits, memo.misses, memo.status) == (1, 0, "hit")


@pytest.mark.parametrize("change", ["weights", "inputs", "targets", "setting", "tensor setting", "part"])
def test_anything_that_shapes_the_result_changes_the_key(cnn_pair, change) -> None:
    teacher, _ = cnn_pair
    x, y, keep = torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), torch.zeros(4, 3, dtype=torch.bool)
    args = {"part": "maps", "inputs": x, "targets": y, "settings": {"method": "saliency", "keep": keep}}
    before = _memo(teacher, Path(".")).key(**args)
    if change == "weights":
        with torch.no_grad():
            next(teacher.parameters()).view(-1)[0] += 1e-6
    elif change == "inputs":
        args["inputs"] = x + torch.tensor([1e-6, 0.0, 0.0])
    elif change == "targets":
        args["targets"] = torch.tensor([0, 1, 0, 0])
    elif change == "setting":
        args["settings"] = {"method": "integrated_gradients", "keep": keep}
    elif change == "tensor setting":
        args["settings"] = {"method": "saliency", "keep": torch.ones(4, 3, dtype=torch.bool)}
    else:
        args["part"] = "sanity"
    assert _memo(teacher, Path(".")).key(**args) != before


def test_a_broken_entry_is_computed_again_and_replaced(cnn_pair, tmp_path) -> None:
    teacher, _ = cnn_pair
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    value = torch.arange(6.0).view(2, 3)
    _memo(teacher, tmp_path).tensor("maps", x, y, {}, lambda: value)
    (entry,) = tmp_path.glob("explain-*.safetensors")
    entry.write_bytes(entry.read_bytes()[:20])  # cut short mid-write
    compute, calls = _counting(value)
    memo = _memo(teacher, tmp_path)
    with pytest.warns(UserWarning, match="computing it again"):
        assert torch.equal(memo.tensor("maps", x, y, {}, compute), value) and len(calls) == 1
    assert torch.equal(_memo(teacher, tmp_path).tensor("maps", x, y, {}, lambda: pytest.fail("recomputed")), value)


def test_a_record_reads_back_as_it_was_returned(cnn_pair, tmp_path) -> None:
    teacher, _ = cnn_pair
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    computed = _memo(teacher, tmp_path).record("sanity", x, y, {}, lambda: {"a": float("nan"), "b": (1.0, 2.5)})
    assert computed == {"a": None, "b": [1.0, 2.5]}  # NaN → None, tuple → list: as JSON keeps them
    again = _memo(teacher, tmp_path).record("sanity", x, y, {}, lambda: pytest.fail("recomputed"))
    assert again == computed
    (entry,) = tmp_path.glob("explain-*.json")
    stored = json.loads(entry.read_text())
    stored["key"] = "0" * 64  # an entry under the wrong name is not trusted
    entry.write_text(json.dumps(stored))
    compute, calls = _counting({"a": 1.0})
    with pytest.warns(UserWarning, match="not the record it is named after"):
        assert _memo(teacher, tmp_path).record("sanity", x, y, {}, compute) == {"a": 1.0} and len(calls) == 1


def test_maps_of_the_wrong_shape_are_not_served(cnn_pair, tmp_path) -> None:
    teacher, _ = cnn_pair
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 0])
    _memo(teacher, tmp_path).tensor("maps", x, y, {}, lambda: torch.ones(3, 4))
    (entry,) = tmp_path.glob("explain-*.safetensors")
    save_file({"value": torch.ones(2, 4)}, str(entry))  # a forged entry under the right name, for 2 samples
    with pytest.warns(UserWarning, match="no maps for these 3 samples"):
        assert torch.equal(_memo(teacher, tmp_path).tensor("maps", x, y, {}, lambda: torch.zeros(3, 4)), torch.zeros(3, 4))


def test_an_entry_found_elsewhere_is_copied_into_every_save_folder(cnn_pair, tmp_path) -> None:
    teacher, _ = cnn_pair
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    shared, run = tmp_path / "shared", tmp_path / "run"
    _memo(teacher, shared).tensor("maps", x, y, {}, lambda: torch.ones(2, 3))
    memo = TeacherMemo(teacher, directories=[run, shared], save_to=[run, shared])
    memo.tensor("maps", x, y, {}, lambda: pytest.fail("recomputed"))
    assert [p.name for p in run.iterdir()] == [p.name for p in shared.iterdir()]


def _without_timing(block: dict) -> dict:
    return {k: v for k, v in block.items() if k not in ("timing_s", "teacher_memo")}


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN and to None (a record reads NaN back as None)."""
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(b, float) and math.isnan(b):
        return a is None
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a == b


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam"])
def test_explain_models_gives_the_same_block_with_and_without_the_memo(cnn_pair, digits, tmp_path, method) -> None:
    teacher, student = cnn_pair
    torch.manual_seed(3)
    baseline = build_model("cnn", digits.spec, width=4).eval()
    kwargs = {"seed": 0, "sanity_samples": 4, "sanity_layers": 2, "others": {"baseline": baseline}}
    _, plain = explain_models(teacher, student, digits.test, [method], 12, **kwargs)
    memo = _memo(teacher, tmp_path)
    cmp_a, computed = explain_models(teacher, student, digits.test, [method], 12, memo=memo, **kwargs)
    assert computed["teacher_memo"] == "computed" and memo.misses == 3  # maps, faithfulness, sanity
    memo = _memo(teacher, tmp_path)
    cmp_b, read = explain_models(teacher, student, digits.test, [method], 12, memo=memo, **kwargs)
    assert read["teacher_memo"] == "hit" and (memo.hits, memo.misses) == (3, 0)
    assert _same(_without_timing(plain), _without_timing(computed))
    assert _same(_without_timing(computed), _without_timing(read))
    assert torch.equal(cmp_a[0].teacher_maps, cmp_b[0].teacher_maps)
    assert set(plain["timing_s"]) == {"teacher_attributions", "attributions", "faithfulness", "sanity"}
    assert "teacher_memo" not in plain


def test_a_second_run_with_a_shared_cache_reads_the_teachers_explanations(tmp_path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    args = ["--quiet", "--set", "distill.cache_dir=shared-cache", "--set", "distill.baseline=false",
            "--set", "teacher.train.epochs=1", "--set", "distill.epochs=1"]
    first = invoke("run", "tiny.yaml", "--out", "runs/a", *args, cwd=tmp_path)
    second = invoke("run", "tiny.yaml", "--out", "runs/b", *args, cwd=tmp_path)
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    a, b = (json.loads((tmp_path / "runs" / r / "metrics.json").read_text())["explanations"] for r in "ab")
    assert (a["teacher_memo"], b["teacher_memo"]) == ("computed", "hit")
    assert _without_timing(a) == _without_timing(b)
    entries = sorted(p.name for p in (tmp_path / "shared-cache").glob("explain-*"))
    assert entries and entries == sorted(p.name for p in (tmp_path / "runs" / "b" / "cache").glob("explain-*"))


def test_explaining_a_run_folder_again_does_not_read_its_teacher_entries(finished_runs, tmp_path) -> None:
    """A run folder may come from elsewhere: ``distilens explain RUN`` computes the teacher's maps, never trusts cache/."""
    from distilens.commands import explain_run

    run = finished_runs.copy("digits", tmp_path)
    planted = list((run.path / "cache").glob("explain-*.safetensors"))
    assert planted, "the run kept its teacher's maps"
    for entry in planted:  # forged maps under the right names
        save_file({"value": torch.zeros_like(load_file(str(entry))["value"])}, str(entry))
    block = explain_run(run.path)
    assert "teacher_memo" not in block
    maps = load_file(str(run.path / "explanations.safetensors"))
    teacher_maps = [v for k, v in maps.items() if k.endswith("/teacher_maps")]
    assert teacher_maps and all(bool(m.abs().sum() > 0) for m in teacher_maps)
