"""Stored teacher views (FKD-style) and per-epoch views: exact labels, keys, recorded params (issue 16 B3)."""

from __future__ import annotations

import torch

from distilens.data.augment import parse_augment
from distilens.distill import SoftLabelCache
from distilens.distill.views import TrainingViews, epoch_params, stored_params, stored_view
from distilens.models import build_model

AUG = [{"name": "crop", "padding": 2}, {"name": "hflip"}, {"name": "erase", "p": 0.5}]


def test_stored_views_hold_the_teacher_applied_to_the_recreated_view(digits, tmp_path) -> None:
    aug = parse_augment(AUG)
    teacher = build_model("cnn", digits.spec, width=4).eval()
    cache = SoftLabelCache.build(teacher, digits.train, batch_size=97, augment=aug, views=3, view_seed=5)
    n = len(digits.train)
    assert cache.views == 3 and len(cache) == 3 * n and cache.num_samples == n
    idx = torch.tensor([0, 11, n - 1])
    for k in range(3):
        params = stored_params(aug, n, (8, 8), seed=5, view=k)  # drawn again from the seed alone
        recorded = cache.view_params(idx, k)
        assert len(recorded) == 3  # every op's parameters are recorded
        for mine, stored in zip((p[idx] for p in params), recorded):
            assert torch.equal(mine, stored)
        with torch.no_grad():
            live = teacher(aug.apply(digits.train.inputs[idx], recorded))
        torch.testing.assert_close(cache[cache.rows(idx, k)], live, rtol=0, atol=1e-5)
    again = SoftLabelCache.load(cache.save(tmp_path), key=cache.key, num_samples=n)
    assert again.views == 3 and torch.equal(again.logits, cache.logits)
    assert all(torch.equal(a, b) for a, b in zip(again.view_params(idx, 2), cache.view_params(idx, 2)))


def test_stored_views_in_fp16_top_k(digits) -> None:
    aug = parse_augment(AUG[:2])
    teacher = build_model("cnn", digits.spec, width=4).eval()
    cache = SoftLabelCache.build(teacher, digits.train, augment=aug, views=2, dtype="fp16", top_k=3)
    idx = torch.arange(5)
    with torch.no_grad():
        live = teacher(aug.apply(digits.train.inputs[idx], cache.view_params(idx, 1)))
    assert torch.equal(cache.teacher_target(cache.rows(idx, 1)), live.argmax(1))


def test_the_key_covers_the_augmentation_k_and_seed(digits) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    key = lambda aug, k=2, s=0: SoftLabelCache.key_for(teacher, digits.train, augment=parse_augment(aug), views=k, view_seed=s)  # noqa: E731
    base = key(AUG)
    assert key(AUG) == base
    assert key([{"name": "crop", "padding": 3}, *AUG[1:]]) != base  # an option
    assert key(AUG[:2]) != base  # an op
    assert key(AUG, k=3) != base and key(AUG, s=1) != base
    assert SoftLabelCache.key_for(teacher, digits.train) != base  # no views: the plain key


def test_views_depend_on_seed_epoch_and_sample_only() -> None:
    aug = parse_augment(AUG)
    a = epoch_params(aug, 50, (8, 8), seed=1, epoch=2)
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_params(aug, 50, (8, 8), seed=1, epoch=2)))
    assert not torch.equal(a[0], epoch_params(aug, 50, (8, 8), seed=1, epoch=3)[0])
    assert [stored_view(e, 3) for e in range(1, 6)] == [0, 1, 2, 0, 1]
    views = TrainingViews(aug, 50, (8, 8), seed=1)
    views.start_epoch(2)
    idx = torch.tensor([4, 9])  # a batch's rows are the split's rows: any batching gives the same views
    assert all(torch.equal(p, q[idx]) for p, q in zip(views.params(idx), a))
