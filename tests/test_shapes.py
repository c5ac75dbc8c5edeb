import time

import torch

from distilens.data import DATASETS, load_dataset
from distilens.data.builtin import SHAPE_CLASSES, _shape_mask, make_shapes


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = make_shapes(n=64, seed=1), make_shapes(n=64, seed=1), make_shapes(n=64, seed=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.masks, b.masks) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_shapes_layout_and_registration() -> None:
    raw = make_shapes(n=40, size=24, seed=0)
    assert raw.inputs.shape == (40, 1, 24, 24) and raw.masks.shape == (40, 24, 24) and raw.masks.dtype == torch.bool
    assert raw.class_names == SHAPE_CLASSES and raw.kind == "image" and raw.test_only is None
    assert torch.bincount(raw.targets).tolist() == [10, 10, 10, 10]
    assert "shapes" in DATASETS and "shapes_spurious" in DATASETS


def test_masks_align_with_the_drawn_shape() -> None:
    raw = make_shapes(n=100, seed=3)
    for i in range(100):
        m = raw.masks[i]
        assert m.sum() >= 9, "every image has a visible class shape"
        inside, outside = raw.inputs[i, 0][m], raw.inputs[i, 0][~m]
        # The class shape is drawn bright (≈ 1) on top; background ≈ 0, outlines 0.5.
        assert inside.mean() > 0.85
        assert (outside > 0.8).float().mean() < 0.05
    # The mask is the class's shape: a disc's mask has no corners filled of its bounding box.
    assert _shape_mask(1, 8.0, 8.0, 4.0, 17)[4, 4] == False  # noqa: E712
    assert _shape_mask(0, 8.0, 8.0, 4.0, 17)[5, 5] == True  # noqa: E712


def test_spurious_cue_follows_the_label_in_train_not_in_test() -> None:
    bundle = load_dataset("builtin:shapes_spurious", seed=0)
    assert bundle.test.masks is not None and bundle.train.masks is not None

    def corner_matches_label(split) -> float:
        x = split.inputs[:, 0]
        patches = torch.stack([x[:, :3, :3], x[:, :3, -3:], x[:, -3:, :3], x[:, -3:, -3:]], 1).mean((2, 3))
        return float((patches.argmax(1) == split.targets).float().mean())

    assert corner_matches_label(bundle.train) > 0.9
    assert corner_matches_label(bundle.test) < 0.4  # chance is 1/4
    assert torch.bincount(bundle.test.targets).tolist() == [100, 100, 100, 100]


def test_generation_is_fast() -> None:
    t0 = time.perf_counter()
    make_shapes(n=2000, spurious=True, seed=0)
    assert time.perf_counter() - t0 < 4.0  # < 1 s on an idle core; slack for shared CI machines
