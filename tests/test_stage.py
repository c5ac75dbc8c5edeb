import pytest
import torch

from distilens.data import load_dataset
from distilens.errors import DistilensError
from distilens.explain.stage import explain_models, stratified_indices
from distilens.models import build_model
from distilens.testing import assert_no_hooks, tiny_bundle


def test_stratified_indices_cycle_through_classes() -> None:
    targets = torch.tensor([0] * 10 + [1] * 3 + [2] * 10)
    idx = stratified_indices(targets, 9, seed=0)
    assert torch.bincount(targets[idx]).tolist() == [3, 3, 3]
    assert torch.equal(idx, stratified_indices(targets, 9, seed=0)) and torch.equal(idx, idx.sort().values)
    idx = stratified_indices(targets, 15, seed=0)
    assert torch.bincount(targets[idx]).tolist() == [6, 3, 6]
    assert stratified_indices(targets, 100).numel() == 23


def test_explain_block_follows_the_contract(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    comparisons, block = explain_models(
        teacher, student, digits.test, ["gradcam", "saliency"], 20, seed=0, sanity_samples=4, sanity_layers=2
    )
    assert [c.method for c in comparisons] == ["gradcam", "saliency"]
    assert block["method"] == "gradcam" and block["n_samples"] == 20
    assert set(block["agreement"]) == {"spearman", "kendall", "pearson", "topk_iou", "cosine", "ssim"}
    assert set(block["faithfulness"]["teacher"]) == {"deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve"}
    assert len(block["faithfulness"]["teacher"]["deletion_curve"]) == 17
    assert "localization" not in block  # digits have no masks
    assert [m["method"] for m in block["methods"]] == ["gradcam", "saliency"]
    assert set(block["sanity"]["teacher"]) == {"layers", "spearman", "abs_spearman", "ssim"}
    assert len(block["sanity"]["student"]["layers"]) == 2
    assert set(block["galleries"]) == {"same_class_disagree", "different_class"}
    assert set(sum(block["galleries"].values(), [])) <= set(block["sample_indices"])
    assert len(block["sample_indices"]) == 20
    assert_no_hooks(teacher)
    assert_no_hooks(student)


def test_localization_appears_with_masks() -> None:
    bundle = load_dataset("builtin:shapes", seed=0)
    torch.manual_seed(0)
    t, s = build_model("cnn", bundle.spec, width=4).eval(), build_model("cnn", bundle.spec, width=2).eval()
    _, block = explain_models(t, s, bundle.test, ["gradcam"], 8, sanity=False)
    loc = block["localization"]
    assert set(loc) == {"teacher", "student"} and set(loc["teacher"]) == {"mass_in_mask", "pointing_game"}
    assert 0.0 <= loc["teacher"]["mass_in_mask"] <= 1.0


def test_inapplicable_methods_raise_or_are_skipped() -> None:
    bundle = tiny_bundle(n=30, shape=(6,))
    torch.manual_seed(0)
    t, s = build_model("mlp", bundle.spec, hidden=(8,)), build_model("mlp", bundle.spec, hidden=(4,))
    with pytest.raises(DistilensError, match="gradcam.*image"):
        explain_models(t, s, bundle.test, ["gradcam", "integrated_gradients"], 6)
    _, block = explain_models(t, s, bundle.test, ["gradcam", "integrated_gradients"], 6, skip_inapplicable=True)
    assert block["method"] == "integrated_gradients" and "gradcam" in block["skipped"]
    assert "ssim" not in block["agreement"]
    with pytest.raises(DistilensError, match="unknown explainer"):
        explain_models(t, s, bundle.test, ["gradcom"], 6)
