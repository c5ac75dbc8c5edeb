import warnings

import torch

from distilens.distill import SoftLabelCache
from distilens.models import build_model


def test_cache_serves_exactly_the_live_teacher_forward(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    teacher.train()  # the cache must evaluate in eval mode and restore the mode
    cache = SoftLabelCache.build(teacher, digits.train, batch_size=100)
    assert teacher.training
    idx = torch.tensor([0, 7, 3, len(digits.train) - 1])
    teacher.eval()
    with torch.no_grad():
        live = teacher(digits.train.inputs[idx])
    torch.testing.assert_close(cache[idx], live, rtol=0, atol=1e-6)
    path = cache.save(tmp_path)
    again = SoftLabelCache.load(path, key=cache.key, num_samples=len(digits.train))
    assert torch.equal(again.logits, cache.logits)


def test_reuse_and_invalidation_by_teacher_weights(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    first, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path)
    assert not hit
    second, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path)
    assert hit and second.key == first.key and torch.equal(second.logits, first.logits)

    with torch.no_grad():
        teacher.head.bias.add_(0.5)  # a changed teacher gets another key and fresh logits
    third, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path)
    assert not hit and third.key != first.key
    torch.testing.assert_close(third.logits, first.logits + 0.5, rtol=0, atol=1e-5)


def test_changed_data_changes_the_key(digits) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    other = digits.train.subset(torch.arange(10))
    assert SoftLabelCache.key_for(teacher, digits.train) != SoftLabelCache.key_for(teacher, other)


def test_corrupt_cache_file_is_rebuilt_with_a_warning(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    cache, _ = SoftLabelCache.load_or_build(teacher, digits.train, directories=[], save_to=tmp_path)
    path = tmp_path / SoftLabelCache.filename(cache.key)
    path.write_bytes(path.read_bytes()[:100])  # cut short
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path)
    assert not hit and any("soft-label cache" in str(w.message) for w in caught)
    assert torch.equal(rebuilt.logits, cache.logits)


# ---------------------------------------------------------------- storage options
import math  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from distilens.models import get_layer  # noqa: E402
from distilens.testing import assert_no_hooks  # noqa: E402


def test_top_k_reconstruction_by_hand() -> None:
    # logits (ln 4, ln 2, ln 1, ln 1) → p = (.5, .25, .125, .125). k = 1 keeps log .5 and
    # spreads r = .5 over 3 classes: logits (ln .5, ln(1/6), ln(1/6), ln(1/6)).
    logits = torch.log(torch.tensor([[4.0, 2.0, 1.0, 1.0], [1.0, 1.0, 1.0, 5.0]]))
    cache = SoftLabelCache(logits, key="k", top_k=1)
    out = cache[torch.tensor([0, 1])]
    torch.testing.assert_close(out[0], torch.log(torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6])))
    torch.testing.assert_close(F.softmax(out[1], 0), torch.tensor([0.125, 0.125, 0.125, 0.625]))
    # k = 2 keeps (.5, .25) and spreads .25 over 2: (.5, .25, .125, .125) — exact here.
    two = SoftLabelCache(logits, key="k", top_k=2)
    torch.testing.assert_close(F.softmax(two[torch.tensor([0])], 1), F.softmax(logits[:1], 1))
    assert torch.equal(cache.teacher_target(torch.tensor([0, 1])), torch.tensor([0, 3]))


def test_top_k_keeps_top_logit_differences_and_is_a_distribution_at_T1() -> None:
    logits = torch.randn(50, 10) * 3
    cache = SoftLabelCache(logits, key="k", top_k=3)
    rec = cache.logits
    assert torch.allclose(F.softmax(rec, 1).sum(1), torch.ones(50))
    top = logits.topk(3, 1)
    rec_top = rec.gather(1, top.indices)
    # differences among the kept classes survive at any temperature
    torch.testing.assert_close(rec_top - rec_top[:, :1], top.values - top.values[:, :1], rtol=0, atol=1e-5)
    assert torch.equal(rec.argmax(1), logits.argmax(1))
    # tail mass at T = 1 is the true tail mass
    mask = torch.ones_like(logits, dtype=torch.bool).scatter(1, top.indices, False)
    torch.testing.assert_close((F.softmax(rec, 1) * mask).sum(1), (F.softmax(logits, 1) * mask).sum(1), rtol=1e-4, atol=1e-6)


def test_top_k_tail_is_finite_when_the_tail_mass_underflows() -> None:
    logits = torch.tensor([[200.0, 0.0, -200.0, -300.0]])
    out = SoftLabelCache(logits, key="k", top_k=1).logits
    assert torch.isfinite(out).all()


def test_fp16_error_bound_and_round_trip(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    full = SoftLabelCache.build(teacher, digits.train)
    half = SoftLabelCache.build(teacher, digits.train, dtype="fp16", features=["auto"])
    assert half.key != full.key and half.nbytes() < full.nbytes() + half.features("auto", torch.arange(len(half))).numel() * 4
    x = full.logits
    err = (half.logits - x).abs()
    bound = torch.maximum(x.abs() * 2.0**-11, torch.full_like(x, 2.0**-25))
    assert (err <= bound).all()
    path = half.save(tmp_path)
    again = SoftLabelCache.load(path, key=half.key, num_samples=len(digits.train))
    assert again.dtype == "fp16" and torch.equal(again.logits, half.logits)
    idx = torch.tensor([3, 1])
    assert torch.equal(again.features("auto", idx), half.features("features.4.2", idx))


def test_round_trip_with_top_k_features_and_maps(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4).eval()
    opts = {"top_k": 3, "features": ["features.1"], "gradcam": ["auto"], "input_gradients": True}
    cache, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path, **opts)
    assert not hit
    again, hit = SoftLabelCache.load_or_build(teacher, digits.train, directories=[tmp_path], save_to=tmp_path, **opts)
    assert hit and again.top_k == 3
    idx = torch.tensor([0, 9, 4])
    for a, b in ((again[idx], cache[idx]), (again.gradcam("auto", idx), cache.gradcam("features.4.2", idx)),
                 (again.input_gradients(idx), cache.input_gradients(idx))):
        assert torch.equal(a, b)
    assert again.features("features.1", idx).shape == (3, 4, 8, 8)
    assert again.gradcam("auto", idx).shape == (3, 4, 4)
    # The maps are those of the live teacher for its top class, and no hook is left behind.
    x = digits.train.inputs[idx]
    with torch.no_grad():
        top = teacher(x).argmax(1)
    assert torch.equal(again.teacher_target(idx), top)
    from distilens.explain.differentiable import differentiable_gradcam

    torch.testing.assert_close(again.gradcam("auto", idx), differentiable_gradcam(teacher, x, top, create_graph=False))
    assert_no_hooks(teacher)
    # Another layer set is another key; a missing layer is named in the error.
    assert SoftLabelCache.key_for(teacher, digits.train, **{**opts, "features": ["features.0"]}) != cache.key
    with pytest.raises(KeyError, match="holds no features for layer 'features.0'"):
        cache.features("features.0", idx)


def test_load_validates_key_and_shape(digits, tmp_path) -> None:
    teacher = build_model("cnn", digits.spec, width=4)
    cache = SoftLabelCache.build(teacher, digits.train, top_k=2)
    path = cache.save(tmp_path)
    with pytest.raises(ValueError, match="another teacher"):
        SoftLabelCache.load(path, key="0" * 64, num_samples=len(digits.train))
    with pytest.raises(ValueError, match="expected 10 finite rows"):
        SoftLabelCache.load(path, key=cache.key, num_samples=10)
    with pytest.raises(ValueError, match="top_k must be in"):
        SoftLabelCache(torch.zeros(2, 3), key="k", top_k=3)
    with pytest.raises(ValueError, match="not finite in fp16"):
        SoftLabelCache(torch.full((2, 3), 1e6), key="k", dtype="fp16")
    assert get_layer(teacher, "features.4") is not None and math.isfinite(cache.logits.sum().item())


def test_a_text_teachers_rows_run_by_length_and_come_back_in_order() -> None:
    """Token ids are labelled in batches of similar length cut to their longest row: each row's logits as alone."""
    from distilens.data import Split
    from distilens.testing.text import TinyAttention

    teacher = TinyAttention(vocab=12, seed=2).train()
    g = torch.Generator().manual_seed(0)
    lengths = [7, 1, 12, 3, 3, 9, 16, 2]
    ids = torch.zeros(len(lengths), 16, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, 12, (n,), generator=g)
    split = Split(ids, torch.zeros(len(lengths), dtype=torch.long))
    cache = SoftLabelCache.build(teacher, split, batch_size=3)
    assert teacher.training  # mode restored
    teacher.eval()
    with torch.no_grad():
        for i, n in enumerate(lengths):
            torch.testing.assert_close(cache[torch.tensor([i])], teacher(ids[i : i + 1, :n]), rtol=0, atol=1e-6)
