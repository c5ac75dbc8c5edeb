"""A checkpoint or soft-label cache file cut short or changed on disk is detected, warned about,
and replaced by the previous good checkpoint (or a recomputed cache); the run still ends with
the weights of an uninterrupted one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from distilens.distill import CE, KD, SoftLabelCache, fit
from distilens.distill.checkpoint import load_checkpoint, previous_checkpoint, save_checkpoint
from distilens.errors import DistilensError
from distilens.models import build_model
from distilens.testing import tiny_bundle

KWARGS = dict(epochs=3, batch_size=16, lr=1e-2, seed=3, device="cpu")


class _Stop(Exception):
    pass


def _stop_after(epoch: int):
    def on_epoch(row: dict) -> None:
        if row["epoch"] == epoch:
            raise _Stop

    return on_epoch


def _fit(bundle, cache, **kwargs):
    torch.manual_seed(0)
    model = build_model("cnn", bundle.spec, width=4)
    result = fit(model, bundle, objectives=[KD(weight=0.5), CE(weight=0.5)], teacher_cache=cache, **KWARGS, **kwargs)
    return model, result


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def setup():
    bundle = tiny_bundle()
    torch.manual_seed(1)
    cache = SoftLabelCache.build(build_model("cnn", bundle.spec, width=6), bundle.train)
    reference, _ = _fit(bundle, cache)
    return bundle, cache, {k: v.clone() for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("damage", [_cut, _flip], ids=["cut-in-half", "one-byte-changed"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_and_ends_identical(setup, tmp_path, damage) -> None:
    bundle, cache, reference = setup
    ck = tmp_path / "student.pt"
    with pytest.raises(_Stop):
        _fit(bundle, cache, checkpoint_path=ck, on_epoch=_stop_after(2))
    prev = previous_checkpoint(ck)
    assert prev.name == "student.prev.pt" and torch.load(prev, weights_only=True)["epoch"] == 1
    assert torch.load(ck, weights_only=True)["epoch"] == 2
    damage(ck)
    with pytest.warns(UserWarning, match=r"student\.pt' (is \d+ bytes, not the \d+ written \(cut short\)|does not match "
                                         r"its SHA-256 digest).*resuming from the previous one, 'student.prev.pt' \(epoch 1\)"):
        model, result = _fit(bundle, cache, checkpoint_path=ck, resume=True)
    assert result.resumed_from == 2  # epochs 2 and 3 run again from epoch 1's state
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert load_checkpoint(ck)["epoch"] == 3  # the new checkpoint is intact again


def test_no_intact_checkpoint_left_is_one_clear_error(tmp_path) -> None:
    ck = tmp_path / "teacher.pt"
    save_checkpoint(ck, {"epoch": 1, "w": torch.arange(100.0)})
    save_checkpoint(ck, {"epoch": 2, "w": torch.arange(100.0)})
    _cut(ck)
    _cut(previous_checkpoint(ck))
    with pytest.raises(DistilensError) as info:
        load_checkpoint(ck)
    message = str(info.value)
    assert "cut short" in message and "no intact previous checkpoint" in message and "without --resume" in message
    assert "\n" not in message


def test_a_damaged_checkpoint_is_never_rotated_over_the_good_previous_one(tmp_path) -> None:
    ck = tmp_path / "m.pt"
    for epoch in (1, 2):
        save_checkpoint(ck, {"epoch": epoch})
    _cut(ck)  # epoch 2 is damaged; epoch 1 is the previous good one
    save_checkpoint(ck, {"epoch": 3})
    assert load_checkpoint(previous_checkpoint(ck))["epoch"] == 1
    assert load_checkpoint(ck)["epoch"] == 3
    (ck.parent / "m.pt.sha256").unlink()  # written before digests existed: still read, checked by torch.load
    assert load_checkpoint(ck)["epoch"] == 3
    _cut(ck)
    with pytest.warns(UserWarning, match="cannot be read"):
        assert load_checkpoint(ck)["epoch"] == 1


def test_checkpoint_files_are_the_contract_and_nothing_else(tmp_path) -> None:
    ck = tmp_path / "checkpoints" / "student.pt"
    for epoch in (1, 2, 3):
        save_checkpoint(ck, {"epoch": epoch})
    names = sorted(p.name for p in ck.parent.iterdir())
    assert names == ["student.prev.pt", "student.prev.pt.sha256", "student.pt", "student.pt.sha256"]
    assert load_checkpoint(previous_checkpoint(ck))["epoch"] == 2


@pytest.mark.parametrize("damage", [_cut, _flip], ids=["cut-in-half", "one-byte-changed"])
def test_a_damaged_cache_file_is_recomputed_with_a_warning(setup, tmp_path, damage) -> None:
    bundle, cache, _ = setup
    teacher = build_model("cnn", bundle.spec, width=4)
    built, hit = SoftLabelCache.load_or_build(teacher, bundle.train, directories=[], save_to=tmp_path)
    path = tmp_path / SoftLabelCache.filename(built.key)
    damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, hit = SoftLabelCache.load_or_build(teacher, bundle.train, directories=[tmp_path], save_to=tmp_path)
    assert not hit and torch.equal(again.logits, built.logits)
    assert [str(w.message) for w in caught if "soft-label cache" in str(w.message)], [str(w.message) for w in caught]
    saved = SoftLabelCache.load(path, key=built.key, num_samples=len(bundle.train))  # the damaged file was replaced
    assert torch.equal(saved.logits, built.logits)
