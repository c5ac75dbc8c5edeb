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


# --- choosing the methods of a run, for every kind of data -----------------------------------------


def _text_inputs():
    from distilens.explain import ExplainInputs
    from distilens.testing.text import Enc

    ids = torch.tensor([[2, 3, 4], [5, 6, 0], [7, 0, 0]])
    offsets = [[(0, 1), (2, 3), (4, 5)], [(0, 1), (2, 3)], [(0, 1)]]
    enc = Enc(ids, offsets)
    return ExplainInputs.from_texts(["a b c", "d e", "f"], torch.tensor([0, 1, 0]), enc, enc)


def test_choose_methods_skips_inapplicable_defaults_with_the_reason_for_every_kind(cnn_pair, digits) -> None:
    from distilens.explain import ExplainInputs, choose_methods
    from distilens.testing.text import MeanBag, TinyAttention

    defaults = ["gradcam", "integrated_gradients"]
    image = ExplainInputs.from_split(digits.test)
    assert choose_methods(defaults, *cnn_pair, image, explicit=False) == (defaults, {})
    table = tiny_bundle(n=30, shape=(6,))
    mlp = build_model("mlp", table.spec, hidden=(4,))
    run, skipped = choose_methods(defaults, mlp, mlp, ExplainInputs.from_split(table.test), explicit=False)
    assert run == ["integrated_gradients"] and skipped == {"gradcam": "needs image inputs"}
    images = tiny_bundle(n=30)
    mlp = build_model("mlp", images.spec, hidden=(4,))
    run, skipped = choose_methods(defaults, mlp, mlp, ExplainInputs.from_split(images.test), explicit=False)
    assert run == ["integrated_gradients"] and "spatial" in skipped["gradcam"]
    text = _text_inputs()
    run, skipped = choose_methods([*defaults, "attention_rollout"], TinyAttention(), MeanBag(), text, explicit=False)
    assert run == ["integrated_gradients"] and skipped["gradcam"] == "needs image inputs"
    assert "MeanBag does not give" in skipped["attention_rollout"]
    # A soft tree's output is piecewise constant: no gradient method applies, occlusion does.
    tree = build_model("soft_tree", table.spec, depth=2)
    run, skipped = choose_methods(defaults, tree, tree, ExplainInputs.from_split(table.test), explicit=False)
    assert run == ["occlusion"] and "piecewise constant" in skipped["integrated_gradients"]


def test_choose_methods_named_explicitly_must_apply_one_line_errors(cnn_pair, digits) -> None:
    from distilens.errors import ConfigError
    from distilens.explain import choose_methods
    from distilens.testing.text import MeanBag

    text = _text_inputs()
    with pytest.raises(ConfigError) as err:
        choose_methods(["gradcam"], MeanBag(), MeanBag(), text, explicit=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith("explain.methods: 'gradcam' needs image inputs")
    assert message.endswith("on this text data use one of: input_x_gradient, integrated_gradients, occlusion")
    with pytest.raises(ConfigError, match="explain.methods: unknown explainer 'integrated_gradient'.*did you mean"):
        choose_methods(["integrated_gradient"], MeanBag(), MeanBag(), text, explicit=True)
    with pytest.raises(ConfigError, match="'gradient_x_input' is now called 'input_x_gradient'"):
        choose_methods(["gradient_x_input"], MeanBag(), MeanBag(), text, explicit=True)
    from distilens.explain import ExplainInputs

    with pytest.raises(ConfigError, match="neuron_importance' scores the units of one layer"):
        choose_methods(["neuron_importance"], *cnn_pair, ExplainInputs.from_split(digits.test), explicit=True)
    assert choose_methods(["occlusion"], MeanBag(), MeanBag(), text, explicit=True) == (["occlusion"], {})


def test_explain_stage_writes_where_the_aligner_keeps_maps(cnn_pair, digits, tmp_path) -> None:
    from safetensors.torch import load_file

    from distilens.config import ExplainConfig
    from distilens.explain import ExplainInputs, explain_stage
    from distilens.testing.text import MeanBag

    cfg = ExplainConfig(n_samples=6, sanity=False)
    block = explain_stage(*cnn_pair, ExplainInputs.from_split(digits.test), ["saliency"], tmp_path / "img",
                          config=ExplainConfig(n_samples=6, sanity_samples=2, sanity_layers=1), skipped={"gradcam": "why"})
    assert block["level"] == "pixel" and block["skipped"] == {"gradcam": "why"}
    assert len(block["sanity"]["teacher"]["layers"]) == 1  # explain.sanity_layers
    assert load_file(str(tmp_path / "img" / "explanations.safetensors"))["saliency/teacher_maps"].shape == (6, 1, 8, 8)
    block = explain_stage(MeanBag(), MeanBag(seed=1), _text_inputs(), ["occlusion"], tmp_path / "txt", config=cfg)
    assert block["level"] == "word" and (tmp_path / "txt" / "explanations" / "text.json").is_file()
    assert not (tmp_path / "txt" / "explanations.safetensors").exists()
    assert explain_stage(MeanBag(), MeanBag(), _text_inputs(), [], tmp_path, skipped={"x": "y"}) == {"methods": [], "skipped": {"x": "y"}}
