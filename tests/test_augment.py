"""Augmentation: exact identities, seeded determinism, views re-created from stored parameters, config errors."""

from __future__ import annotations

import pytest
import torch

from distilens.data.augment import AUGMENTATIONS, Augment, Crop, Erase, HFlip, crop, erase, hflip, parse_augment
from distilens.errors import ConfigError

SIZE = (28, 28)


def images(n: int = 32, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, *SIZE, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OPS = [Crop(padding=4), Crop(padding=3, mode="reflect"), HFlip(), Erase(p=1.0)]


@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op))
def test_each_op_is_deterministic_in_its_seed_and_keeps_shapes(op) -> None:
    x = images(c=3)
    aug = Augment((op,))
    a, b, other = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, other)
    assert not torch.equal(a, x)


@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op))
def test_recorded_parameters_recreate_the_view_bit_for_bit(op) -> None:
    x = images(c=3)
    aug = Augment((op,))
    params = aug.sample(x.shape[0], SIZE, gen(7))
    view = aug.apply(x, params)
    assert torch.equal(view, aug(x, gen(7)))  # drawing inside __call__ gives the same view
    # later, for some rows only (a batch of a stored-view epoch), from parameters kept on disk
    rows = torch.tensor([5, 0, 17])
    kept = [p.clone() for p in params]
    assert torch.equal(aug.apply(x[rows], [p[rows] for p in kept]), view[rows])


def test_a_pipeline_recreates_its_views_and_draws_the_same_numbers_every_time() -> None:
    aug = parse_augment([{"name": "crop", "padding": 4, "mode": "reflect"}, {"name": "hflip"}, {"name": "erase"}])
    x = images(c=3)
    params = aug.sample(32, SIZE, gen(3))
    assert [p.dtype for p in params] == [torch.int64, torch.bool, torch.int64]
    assert [tuple(p.shape) for p in params] == [(32, 2), (32,), (32, 4)]
    again = aug.sample(32, SIZE, gen(3))
    assert all(torch.equal(p, q) for p, q in zip(params, again))
    assert torch.equal(aug.apply(x, params), aug(x, gen(3)))


def test_crop_with_padding_zero_and_centre_offset_is_identity() -> None:
    x = images()
    assert torch.equal(Augment((Crop(padding=0),))(x, gen(0)), x)
    for mode in ("zero", "reflect"):
        assert torch.equal(crop(x, torch.full((32, 2), 3), padding=3, mode=mode), x)


def test_crop_shifts_by_hand() -> None:
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    # window at (0, 2) of the zero-padded 5×5 image: one row up, one column right
    out = crop(x, torch.tensor([[0, 2]]), padding=1)
    assert out[0, 0].tolist() == [[0, 0, 0], [2, 3, 0], [5, 6, 0]]
    out = crop(x, torch.tensor([[0, 0]]), padding=1, mode="reflect")
    assert out[0, 0].tolist() == [[5, 4, 5], [2, 1, 2], [5, 4, 5]]
    offsets = Crop(padding=4).sample(1000, SIZE, gen(0))
    assert offsets.min() == 0 and offsets.max() == 8


def test_flip_twice_is_identity_and_flips_only_flagged() -> None:
    x = images()
    flags = HFlip().sample(32, SIZE, gen(0))
    assert 0 < int(flags.sum()) < 32
    once = hflip(x, flags)
    assert torch.equal(hflip(once, flags), x)
    assert torch.equal(once[flags], x[flags].flip(-1)) and torch.equal(once[~flags], x[~flags])
    assert not HFlip(p=0.0).sample(100, SIZE, gen(0)).any() and HFlip(p=1.0).sample(100, SIZE, gen(0)).all()


@pytest.mark.parametrize("size", [(28, 28), (8, 8), (32, 16)])
def test_erasing_area_and_box_within_bounds(size: tuple[int, int]) -> None:
    h, w = size
    op = Erase(p=1.0, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=-7.0)
    boxes = op.sample(2000, size, gen(0))
    top, left, bh, bw = boxes.unbind(1)
    done = bh > 0
    assert done.float().mean() > 0.95  # ten attempts almost always find a box
    area = (bh * bw)[done].double() / (h * w)
    assert area.min() >= 0.02 and area.max() <= 0.4
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    assert (boxes[~done] == 0).all()
    x = torch.ones(2000, 2, h, w)
    out = erase(x, boxes, value=-7.0)
    erased = (out == -7.0).sum(dim=(1, 2, 3))
    assert torch.equal(erased, 2 * bh * bw)  # the whole box, in every channel, and nothing else
    ratio = bh[done].double() / bw[done]
    assert 0.35 < (ratio > 1).double().mean() < 0.65  # log-uniform ratio: tall and wide alike


def test_erase_probability() -> None:
    boxes = Erase(p=0.25).sample(4000, SIZE, gen(0))
    assert 0.2 < (boxes[:, 2] > 0).double().mean() < 0.3
    assert (Erase(p=0.0).sample(100, SIZE, gen(0)) == 0).all()


def test_ops_run_on_the_batch_device_with_cpu_parameters() -> None:
    x = images().to(torch.float64)
    aug = parse_augment([{"name": "crop"}, {"name": "hflip"}, {"name": "erase"}])
    out = aug(x, gen(0))
    assert out.dtype == torch.float64 and out.device == x.device


def test_parse_and_to_config_round_trip() -> None:
    spec = [{"name": "crop", "padding": 2}, {"name": "hflip", "p": 1}, {"name": "erase", "scale": [0.1, 0.2]}]
    aug = parse_augment(spec)
    assert aug.ops == (Crop(padding=2), HFlip(p=1.0), Erase(scale=(0.1, 0.2)))
    config = aug.to_config()
    assert config[0] == {"name": "crop", "padding": 2, "mode": "zero"}
    assert config[1] == {"name": "hflip", "p": 1.0}
    assert parse_augment(config) == aug
    assert parse_augment(None) == Augment() == parse_augment([])
    assert AUGMENTATIONS.names() == ["crop", "erase", "hflip"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "crop"}, r"data.augment must be a list"),
        (["crop"], r"data.augment\[0\] must be a mapping with a 'name'"),
        ([{"padding": 4}], r"data.augment\[0\] must be a mapping with a 'name'"),
        ([{"name": "hflip"}, {"name": "flip"}], r"data.augment\[1\]: unknown augmentation 'flip' \(did you mean 'hflip'\?\); known augmentations: crop, erase, hflip"),
        ([{"name": "crop", "pad": 4}], r"augmentation 'crop' has no option 'pad' \(did you mean 'padding'\?\); its options are: padding, mode"),
        ([{"name": "crop", "padding": -1}], r"crop.padding must be an integer from 0 to 64, not -1"),
        ([{"name": "crop", "padding": 2.5}], r"crop.padding must be an integer"),
        ([{"name": "crop", "mode": "wrap"}], r"crop.mode must be 'zero' or 'reflect', not 'wrap'"),
        ([{"name": "hflip", "p": 1.5}], r"hflip.p must be a probability from 0 to 1"),
        ([{"name": "hflip", "p": True}], r"hflip.p must be a probability"),
        ([{"name": "erase", "scale": [0.5, 0.1]}], r"erase.scale must be \[low, high\]"),
        ([{"name": "erase", "ratio": [1]}], r"erase.ratio must be \[low, high\]"),
        ([{"name": "erase", "value": float("nan")}], r"erase.value must be a finite number"),
    ],
)
def test_config_errors_are_one_line(spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_augment(spec)
    assert "\n" not in str(info.value)


def test_reflect_padding_too_large_for_the_image() -> None:
    aug = parse_augment([{"name": "crop", "padding": 8, "mode": "reflect"}])
    with pytest.raises(ConfigError, match=r"reflect padding 8 needs images larger than 8 pixels a side; these are 8×8"):
        aug.sample(4, (8, 8), gen(0))
    assert aug.sample(4, (9, 9), gen(0))[0].shape == (4, 2)
