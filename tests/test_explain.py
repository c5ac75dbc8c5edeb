import json

import pytest
import torch

from distilens.errors import DistilensError
from distilens.explain import EXPLAINERS, KINDS, Comparison, attribute, compare, explainers_for, register_explainer
from distilens.explain.faithfulness import deletion_insertion, removal_baseline
from distilens.models import build_model
from distilens.testing import LinearModel, assert_no_hooks, tiny_bundle
from distilens.testing.text import MeanBag, TinyAttention

# Methods whose maps are CAMs on the input grid, (B, 1, H, W).
CAMS = {"gradcam", "attention"}
# Right-padded token ids (pad 0) of four texts of different lengths.
IDS = torch.tensor([[3, 5, 7, 2, 0, 0], [1, 4, 4, 9, 11, 6], [8, 2, 0, 0, 0, 0], [6, 6, 1, 0, 0, 0]])
# Fast options so that the conformance tests stay quick.
FAST = {
    "kernel_shap": {"n_samples": 48},
    "lime": {"n_samples": 48},
    "smoothgrad": {"nt_samples": 4},
    "integrated_gradients": {"n_steps": 16},
    "neuron_importance": {"n_steps": 8},
}


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


@pytest.mark.parametrize("method", ["deeplift", "neuron_importance"])
def test_completeness_of_deeplift_and_conductance(method: str, cnn_pair, digits) -> None:
    _, student = cnn_pair
    x, target = digits.test.inputs[:4], torch.tensor([1, 2, 3, 4])
    attr = attribute(student, x, target, method=method, **({"n_steps": 128} if method != "deeplift" else {}))
    with torch.no_grad():
        gap = (student(x) - student(torch.zeros_like(x))).gather(1, target.view(-1, 1)).squeeze(1)
    # DeepLIFT sums to the gap exactly; conductance up to the IG integration error.
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-3, atol=2e-3)


def test_linear_model_closed_forms() -> None:
    w = torch.randn(3, 8)
    model = LinearModel(w, torch.randn(3))
    x = torch.randn(5, 8)
    target = torch.tensor([0, 1, 2, 1, 0])
    ig = attribute(model, x, target, method="integrated_gradients", n_steps=16)
    torch.testing.assert_close(ig, w[target] * x, rtol=1e-5, atol=1e-6)  # IG = w ⊙ (x − 0)
    base = torch.randn(8)
    ig = attribute(model, x, target, method="integrated_gradients", n_steps=16, baseline=base)
    torch.testing.assert_close(ig, w[target] * (x - base), rtol=1e-5, atol=1e-5)  # IG = w ⊙ (x − x′)
    ig = attribute(model, x, target, method="integrated_gradients", n_steps=16, baseline=0.5)
    torch.testing.assert_close(ig, w[target] * (x - 0.5), rtol=1e-5, atol=1e-5)
    sal = attribute(model, x, target, method="saliency")
    torch.testing.assert_close(sal, w[target].abs(), rtol=0, atol=0)  # saliency = |w|
    ixg = attribute(model, x, target, method="input_x_gradient")
    torch.testing.assert_close(ixg, w[target] * x, rtol=0, atol=0)  # input × gradient = w ⊙ x
    dl = attribute(model, x, target, method="deeplift", baseline=base)
    torch.testing.assert_close(dl, w[target] * (x - base), rtol=1e-5, atol=1e-5)
    occ = attribute(model, x, target, method="occlusion")
    torch.testing.assert_close(occ, w[target] * x, rtol=1e-5, atol=1e-5)  # f(x) − f(x with x_j = 0)
    shap = attribute(model, x, target, method="kernel_shap", n_samples=200)
    torch.testing.assert_close(shap, w[target] * x, rtol=1e-3, atol=1e-3)  # Shapley values of a linear model


CASES = [(m, kind) for m in EXPLAINERS.names() for kind in EXPLAINERS.get(m).kinds]
TARGETS = {"image": torch.tensor([3, 1, 4, 1]), "table": torch.tensor([0, 1, 2, 1]), "text": torch.tensor([1, 0, 1, 0])}


@pytest.fixture(scope="module")
def table_model():
    torch.manual_seed(2)
    bundle = tiny_bundle(n=30, shape=(6,))
    return build_model("mlp", bundle.spec, hidden=(8,)).eval(), bundle.test.inputs[:4]


@pytest.fixture(scope="module")
def text_model():
    return TinyAttention(seed=1).eval(), IDS


def _model_and_inputs(kind, cnn_pair, digits, table_model, text_model):
    return {"image": (cnn_pair[0], digits.test.inputs[:4]), "table": table_model, "text": text_model}[kind]


def _expected_shape(method: str, model, x) -> tuple[int, ...]:
    if method == "neuron_importance":
        return (x.shape[0], 16) if x.dim() == 4 else (x.shape[0], 8)  # units of the auto layer
    if method in CAMS:
        return (x.shape[0], 1, *x.shape[-2:])
    return tuple(x.shape)


def test_every_kind_is_explained_and_every_method_declares_one() -> None:
    assert all(EXPLAINERS.get(m).kinds for m in EXPLAINERS.names())
    assert {k for _, k in CASES} == set(KINDS)
    assert explainers_for("text") == ["attention_rollout", "input_x_gradient", "integrated_gradients", "occlusion"]
    assert "gradcam" not in explainers_for("table")


@pytest.mark.parametrize("method,kind", CASES)
def test_conformance_shape_finiteness_device_hooks_mode(method, kind, cnn_pair, digits, table_model, text_model) -> None:
    model, x = _model_and_inputs(kind, cnn_pair, digits, table_model, text_model)
    model.train()
    out = attribute(model, x, method=method, **FAST.get(method, {}))
    assert model.training, "train/eval mode must be restored"
    model.eval()
    assert tuple(out.shape) == _expected_shape(method, model, x)
    assert out.device == x.device and torch.isfinite(out).all() and not out.requires_grad
    assert_no_hooks(model)


@pytest.mark.parametrize("method,kind", CASES)
def test_batched_equals_one_by_one_and_deterministic(method, kind, cnn_pair, digits, table_model, text_model) -> None:
    model, x = _model_and_inputs(kind, cnn_pair, digits, table_model, text_model)
    target = TARGETS[kind]
    opts = FAST.get(method, {})
    torch.manual_seed(123)
    batched = attribute(model, x, target, method=method, **opts)
    state = torch.random.get_rng_state()
    single = torch.cat([attribute(model, x[i : i + 1], target[i : i + 1], method=method, **opts) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's random state must be restored"
    again = attribute(model, x, target, method=method, **opts)
    torch.testing.assert_close(again, batched, rtol=0, atol=0)


@pytest.mark.parametrize("method", [m for m in EXPLAINERS.names() if "table" not in EXPLAINERS.get(m).kinds])
def test_methods_refuse_kinds_they_do_not_declare(method, table_model) -> None:
    model, x = table_model
    with pytest.raises(DistilensError, match=r"needs \w+ inputs, not table inputs; for table inputs use one of: .*saliency"):
        attribute(model, x, method=method)
    assert_no_hooks(model)


def test_token_ids_and_floats_go_to_the_right_models(table_model) -> None:
    model, x = table_model
    with pytest.raises(DistilensError, match="int64 token ids need a text model.*pad_id"):
        attribute(model, IDS, method="integrated_gradients")
    with pytest.raises(DistilensError, match="reads token ids.*int64"):
        attribute(MeanBag(), IDS.float(), method="integrated_gradients")
    with pytest.raises(DistilensError, match="images, .* rows or .* token ids"):
        attribute(model, x[0], method="saliency")


def test_renamed_and_unknown_names_say_what_works() -> None:
    with pytest.raises(DistilensError, match="now called 'input_x_gradient'"):
        attribute(MeanBag(), IDS, method="gradient_x_input")
    with pytest.raises(DistilensError, match="did you mean 'integrated_gradients'"):
        attribute(MeanBag(), IDS, method="integrated_gradient")


def test_a_kind_registered_twice_under_one_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered for text inputs"):
        register_explainer("occlusion", "text")(lambda model, ids, target, keep: ids.float())
    with pytest.raises(ValueError, match="unknown input kind"):
        register_explainer("occlusion", "audio")(lambda model, x, target: x)  # type: ignore[arg-type]


def test_list_explainers_shows_each_method_once_with_its_kinds() -> None:
    from typer.testing import CliRunner

    from distilens.cli import app

    out = CliRunner().invoke(app, ["list", "explainers"])
    assert out.exit_code == 0
    rows = {line.split()[0]: line for line in out.output.strip().splitlines()}
    assert sorted(rows) == EXPLAINERS.names()
    assert "image, table, text" in rows["integrated_gradients"] and "text" in rows["attention_rollout"]
    assert "image" in rows["gradcam"] and "table" not in rows["gradcam"]


def test_occlusion_refuses_windows_on_tables(table_model) -> None:
    model, x = table_model
    with pytest.raises(DistilensError, match="one feature at a time"):
        attribute(model, x, method="occlusion", window=3)


def test_unknown_option_is_a_user_error(cnn_pair, digits) -> None:
    with pytest.raises(DistilensError, match="n_stepz"):
        attribute(cnn_pair[0], digits.test.inputs[:2], method="integrated_gradients", n_stepz=3)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "deeplift", "occlusion", "lime"])
def test_hooks_removed_after_a_failing_call(method, cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    teacher.train()
    with pytest.raises((IndexError, RuntimeError, AssertionError)):
        attribute(teacher, digits.test.inputs[:2], torch.tensor([0, 99]), method=method, **FAST.get(method, {}))
    assert teacher.training
    assert_no_hooks(teacher)


def test_attention_ignores_the_target_and_has_unit_norm(cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    x = digits.test.inputs[:3]
    a0 = attribute(teacher, x, 0, method="attention", layer="features.4")
    a1 = attribute(teacher, x, 7, method="attention", layer="features.4")
    torch.testing.assert_close(a0, a1)
    raw = attribute(teacher, x, 0, method="attention", layer="features.1")  # same grid as the input
    torch.testing.assert_close(raw.flatten(1).norm(dim=1), torch.ones(3), rtol=1e-5, atol=1e-5)


def test_compare_uses_the_teachers_prediction_for_both(cnn_pair, digits) -> None:
    teacher, student = cnn_pair
    cmp = compare(teacher, student, digits.test.inputs[:8], method="saliency")
    with torch.no_grad():
        assert torch.equal(cmp.targets, teacher(digits.test.inputs[:8]).argmax(1))
    expected = attribute(student, digits.test.inputs[:8], cmp.targets, method="saliency")
    torch.testing.assert_close(cmp.student_maps, expected)
    assert set(cmp.scores) == {"spearman", "kendall", "pearson", "topk_iou", "cosine", "ssim"}
    assert all(v.shape == (8,) for v in cmp.scores.values())
    summary = cmp.summary()
    assert all(isinstance(v, float) for v in summary["agreement"].values())
    lo, hi = summary["agreement_ci95"]["spearman"]
    assert lo <= summary["agreement"]["spearman"] <= hi
    # Printed, the summary is a table (one row per score, 3 decimals); as data it is a plain JSON-able dict.
    lines = repr(summary).splitlines()
    assert lines[0].startswith("saliency · 8 inputs · same prediction as the teacher: student ")
    assert lines[1].split() == ["score", "student", "95%", "interval", "sd"]
    row = next(line for line in lines if line.startswith("spearman "))
    assert f"{summary['agreement']['spearman']:.3f}" in row and f"[{lo:.3f}, {hi:.3f}]" in row
    assert len(lines) == 2 + len(summary["agreement"]) and str(summary) == repr(summary)
    assert json.loads(json.dumps(summary)) == dict(summary)


def test_galleries_split_same_and_different_predictions() -> None:
    rho = torch.tensor([0.9, -0.2, 0.1, float("nan"), 0.5])
    cmp = Comparison(
        "saliency", torch.zeros(5, 3), torch.zeros(5), torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 0, 3, 0]),
        torch.zeros(5, 3), torch.zeros(5, 3), {"spearman": rho},
    )
    g = cmp.galleries()
    assert g["same_class_disagree"] == [1, 0, 3]  # lowest ρ first, undefined last
    assert g["different_class"] == [2, 4]


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


@pytest.mark.parametrize("baseline", [0.5, "mean", "blur", "tensor"])
def test_deletion_ends_at_the_baseline(baseline) -> None:
    w = torch.randn(2, 1 * 6 * 6)
    model = LinearModel(w)
    x = torch.randn(3, 1, 6, 6)
    if baseline == "tensor":
        baseline = torch.randn(1, 6, 6)
    maps = torch.rand(3, 1, 6, 6)
    curves = deletion_insertion(model, x, maps, torch.ones(3, dtype=torch.long), steps=4, baseline=baseline)
    ref = removal_baseline(x, baseline)
    with torch.no_grad():
        torch.testing.assert_close(curves["deletion"][:, -1], model(ref).softmax(1)[:, 1])
        torch.testing.assert_close(curves["insertion"][:, 0], model(ref).softmax(1)[:, 1])
    assert removal_baseline(x, "mean")[0, 0].unique().numel() == 1


def test_faithfulness_baseline_errors() -> None:
    with pytest.raises(DistilensError, match="blur"):
        removal_baseline(torch.randn(2, 5), "blur")
    with pytest.raises(DistilensError, match="float"):
        removal_baseline(torch.randn(2, 5), "median")
