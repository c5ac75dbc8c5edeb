"""Stored teacher views (FKD-style) and per-epoch views: exact labels, keys, recorded params (issue 16 B3)."""

from __future__ import annotations

import pytest
import torch

from distilens.data.augment import parse_augment
from distilens.distill import CE, KD, SoftLabelCache, fit
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


# ---------------------------------------------------------------- training on views
from pathlib import Path  # noqa: E402

from distilens.data.imagefolder import load_imagefolder  # noqa: E402
from distilens.distill.step_plan import StepPlan  # noqa: E402


def _seen(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Record every training step's (inputs, cache rows, teacher logits)."""
    seen: list = []
    forward = StepPlan.forward

    def spy(self, x, y, idx, epoch, step):
        logits, views = forward(self, x, y, idx, epoch, step)
        seen.append((x.detach().clone(), idx.clone(), views[0].teacher_logits))
        return logits, views

    monkeypatch.setattr(StepPlan, "forward", spy)
    return seen


def test_stored_views_train_on_exactly_the_labelled_views(digits, monkeypatch) -> None:
    aug = parse_augment(AUG)
    teacher = build_model("cnn", digits.spec, width=4).eval()
    cache = SoftLabelCache.build(teacher, digits.train, augment=aug, views=2, view_seed=7)
    seen = _seen(monkeypatch)
    student = build_model("cnn", digits.spec, width=2)
    fit(student, digits, objectives=[KD()], teacher_cache=cache, epochs=3, batch_size=256, augment=aug, seed=7)
    n = len(digits.train)
    per_epoch = len(seen) // 3
    for e, (x, rows, t) in enumerate(seen[::per_epoch][:3]):  # each epoch's first batch
        view = e % 2
        assert (rows >= view * n).all() and (rows < (view + 1) * n).all()
        with torch.no_grad():
            live = teacher(x)
        torch.testing.assert_close(t, live, rtol=0, atol=1e-5)  # the soft labels are those of the view trained on


def test_online_teacher_labels_each_augmented_batch(digits, monkeypatch) -> None:
    aug = parse_augment(AUG[:2])
    teacher = build_model("cnn", digits.spec, width=4)
    teacher.train()
    seen = _seen(monkeypatch)
    fit(build_model("cnn", digits.spec, width=2), digits, objectives=[KD()], epochs=1, batch_size=512, augment=aug,
        online_teacher=teacher)
    assert teacher.training  # its mode is restored
    teacher.eval()
    x, _, t = seen[0]
    with torch.no_grad():
        torch.testing.assert_close(t, teacher(x), rtol=0, atol=1e-5)
    assert not torch.equal(x, digits.train.inputs[: x.shape[0]])


def test_augmented_training_is_the_same_in_memory_and_lazy(tmp_path: Path) -> None:
    from test_imagefolder_lazy import _folder

    root = _folder(tmp_path / "imgs", n=8)
    aug = parse_augment(AUG)
    results = []
    for lazy in (False, True):
        bundle = load_imagefolder(root, lazy=lazy, num_workers=0, val_fraction=0.25, test_fraction=0.25)
        torch.manual_seed(0)
        model = build_model("cnn", bundle.spec, width=2)
        fit(model, bundle, epochs=2, batch_size=5, augment=aug, seed=3)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_step_schedule() -> None:
    from distilens.distill.state import TrainState

    model = torch.nn.Linear(2, 2)
    state = TrainState.create(model, [], optimizer="sgd", lr=1.0, total_steps=30, schedule="step",
                              milestone_steps=[10, 20], gamma=0.5)
    lrs = []
    for _ in range(30):
        lrs.append(state.optimizer.param_groups[0]["lr"])
        state.optimizer.step()
        state.scheduler.step()
    assert lrs[0] == lrs[9] == 1.0 and lrs[10] == lrs[19] == 0.5 and lrs[20] == 0.25


def test_stored_views_of_a_lazy_split_equal_in_memory(tmp_path: Path) -> None:
    from test_imagefolder_lazy import _folder

    root = _folder(tmp_path / "imgs", n=6)
    aug = parse_augment(AUG)
    caches = []
    for lazy in (False, True):
        bundle = load_imagefolder(root, lazy=lazy, num_workers=0, val_fraction=0.25, test_fraction=0.25)
        torch.manual_seed(0)
        teacher = build_model("cnn", bundle.spec, width=2)
        caches.append(SoftLabelCache.build(teacher, bundle.train, batch_size=4, augment=aug, views=2))
    assert torch.equal(caches[0].logits, caches[1].logits)  # the same views, the same labels (keys differ: a lazy
    # split's fingerprint is its files')


def test_a_plain_cache_with_augmentation_is_refused_for_teacher_losses(digits) -> None:
    aug = parse_augment(AUG[:2])
    teacher = build_model("cnn", digits.spec, width=4).eval()
    plain = SoftLabelCache.build(teacher, digits.train)
    student = build_model("cnn", digits.spec, width=2)
    with pytest.raises(ValueError, match="soft labels of the plain images, but augment= trains on augmented views"):
        fit(student, digits, objectives=[KD(), CE()], teacher_cache=plain, epochs=1, augment=aug)
    # labels alone do not read the cache: augmentation is fine with it
    fit(student, digits, objectives=[CE()], teacher_cache=plain, epochs=1, batch_size=512, augment=aug)
