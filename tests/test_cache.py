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
