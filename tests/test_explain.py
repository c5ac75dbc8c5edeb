import pytest
import torch

from distilens.explain import EXPLAINERS, attribute, compare
from distilens.explain.faithfulness import deletion_insertion
from distilens.testing import LinearModel, assert_no_hooks


def test_ig_completeness_on_the_student(cnn_pair, digits) -> None:
    _, student = cnn_pair
    x = digits.test.inputs[:6]
    target = torch.tensor([0, 1, 2, 3, 4, 5])
    attr = attribute(student, x, target, method="integrated_gradients", n_steps=256)
    with torch.no_grad():
        gap = (student(x) - student(torch.zeros_like(x))).gather(1, target.view(-1, 1)).squeeze(1)
    # Completeness: Σ attributions = f(x) − f(baseline); Gauss–Legendre with 256 steps.
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-3)


def test_ig_completeness_survives_batch_norm_in_train_mode(cnn_pair, digits) -> None:
    _, student = cnn_pair
    student.train()
    x = digits.test.inputs[:4]
    attr = attribute(student, x, 0, method="integrated_gradients", n_steps=128)
    assert student.training  # mode restored
    student.eval()
    with torch.no_grad():
        gap = student(x)[:, 0] - student(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-3, atol=1e-3)


def test_linear_model_closed_forms() -> None:
    w = torch.randn(3, 8)
    model = LinearModel(w, torch.randn(3))
    x = torch.randn(5, 8)
    target = torch.tensor([0, 1, 2, 1, 0])
    ig = attribute(model, x, target, method="integrated_gradients", n_steps=16)
    torch.testing.assert_close(ig, w[target] * x, rtol=1e-5, atol=1e-6)  # IG = w ⊙ (x − 0)
    sal = attribute(model, x, target, method="saliency")
    torch.testing.assert_close(sal, w[target].abs(), rtol=0, atol=0)  # saliency = |w|


def _methods_for_images() -> list[str]:
    return EXPLAINERS.names()


@pytest.mark.parametrize("method", _methods_for_images())
def test_conformance_shape_finiteness_device_hooks(method: str, cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    x = digits.test.inputs[:5]
    teacher.train()
    out = attribute(teacher, x, method=method)
    assert teacher.training, "train/eval mode must be restored"
    expected = (5, 1, 8, 8)
    assert tuple(out.shape) == expected and out.device == x.device and torch.isfinite(out).all()
    assert not out.requires_grad
    assert_no_hooks(teacher)


@pytest.mark.parametrize("method", _methods_for_images())
def test_batched_equals_one_by_one(method: str, cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    x = digits.test.inputs[:4]
    target = torch.tensor([3, 1, 4, 1])
    batched = attribute(teacher, x, target, method=method)
    single = torch.cat([attribute(teacher, x[i : i + 1], target[i : i + 1], method=method) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)


def test_hooks_removed_after_a_failing_call(cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    with pytest.raises((IndexError, RuntimeError)):
        attribute(teacher, digits.test.inputs[:2], torch.tensor([0, 99]), method="gradcam")
    assert_no_hooks(teacher)


def test_compare_uses_the_teachers_prediction_for_both(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    cmp = compare(teacher, student, digits.test.inputs[:8], method="saliency")
    with torch.no_grad():
        assert torch.equal(cmp.targets, teacher(digits.test.inputs[:8]).argmax(1))
    expected = attribute(student, digits.test.inputs[:8], cmp.targets, method="saliency")
    torch.testing.assert_close(cmp.student_maps, expected)
    assert set(cmp.scores) == {"spearman", "topk_iou", "cosine"}
    assert all(v.shape == (8,) for v in cmp.scores.values())


def test_self_comparison_agrees_perfectly(cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    cmp = compare(teacher, teacher, digits.test.inputs[:6], method="integrated_gradients")
    for name, values in cmp.scores.items():
        torch.testing.assert_close(values, torch.ones(6), rtol=0, atol=1e-5, msg=name)


def test_deletion_auc_is_lower_for_the_true_order_than_for_a_random_one() -> None:
    # One pixel decides: class 1's logit is 5·x[3], class 0's is 0, other pixels count 0.01.
    w = torch.full((2, 16), 0.0)
    w[1] = 0.01
    w[1, 3] = 5.0
    model = LinearModel(w)
    x = torch.ones(8, 16)
    target = torch.ones(8, dtype=torch.long)
    truth = attribute(model, x, target, method="integrated_gradients")
    random_maps = torch.rand(8, 16, generator=torch.Generator().manual_seed(0))
    good = deletion_insertion(model, x, truth, target, steps=16)
    bad = deletion_insertion(model, x, random_maps, target, steps=16)
    # A random order can put pixel 3 first by chance (1 in 16), never before the truth.
    assert (good["deletion_auc"] <= bad["deletion_auc"]).all()
    assert (good["insertion_auc"] >= bad["insertion_auc"]).all()
    assert good["deletion_auc"].mean() < bad["deletion_auc"].mean() - 0.1
    assert good["insertion_auc"].mean() > bad["insertion_auc"].mean() + 0.1
    assert good["deletion"].shape == (8, 17)
    # Step 0 is the untouched input; the last deletion step is the baseline everywhere.
    with torch.no_grad():
        p_full = model(x).softmax(1)[:, 1]
        p_base = model(torch.zeros_like(x)).softmax(1)[:, 1]
    torch.testing.assert_close(good["deletion"][:, 0], p_full)
    torch.testing.assert_close(good["deletion"][:, -1], p_base)
