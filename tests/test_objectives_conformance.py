"""Every registered loss, trained through fit() on a tiny image set (timm-style conformance)."""

import pytest
import torch

from distilens.distill import (
    LOSSES,
    CE,
    GradCAMAlign,
    InputGradientAlign,
    SoftLabelCache,
    StepTensors,
    build_objectives,
    fit,
    teacher_cache_options,
)
from distilens.distill.feature_losses import explanation_alignment_loss, input_gradient_alignment_loss
from distilens.explain.differentiable import differentiable_gradcam, input_gradients
from distilens.models import FeatureTap, build_model
from distilens.testing import assert_no_hooks, tiny_bundle


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_trains_through_fit_with_finite_terms(name: str) -> None:
    if name == "attention_kd":
        pytest.skip("needs a transformer student on text; trained through fit in test_attention_kd.py")
    bundle = tiny_bundle(n=32)
    torch.manual_seed(0)
    teacher = build_model("cnn", bundle.spec, width=6)
    student = build_model("cnn", bundle.spec, width=4)
    objectives = [LOSSES.get(name)(), CE(weight=0.1)]
    cache = SoftLabelCache.build(teacher, bundle.train, **teacher_cache_options(objectives))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = fit(student, bundle, objectives=objectives, teacher_cache=cache, epochs=1, batch_size=16, device="cpu")
    row = result.history[0]
    assert torch.isfinite(torch.tensor(row["loss"])) and name in row
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert_no_hooks(student)


@pytest.mark.parametrize("name", [n for n in LOSSES.names() if n not in ("ce", "kd")])
def test_every_new_loss_builds_from_config_with_its_options_checked(name: str) -> None:
    assert type(build_objectives([{"name": name, "weight": 0.5}])[0]) is LOSSES.get(name)
    with pytest.raises(Exception, match=f"loss '{name}' has no option 'bogus'"):
        build_objectives([{"name": name, "bogus": 1}])


def test_gradcam_align_equals_the_loss_on_the_differentiable_gradcam_and_trains_through_it() -> None:
    bundle = tiny_bundle(n=8)
    torch.manual_seed(0)
    student = build_model("cnn", bundle.spec, width=4).eval()  # eval: BN fixed, maps comparable
    x = bundle.train.inputs
    target = torch.arange(8) % 3
    teacher_maps = torch.rand(8, 2, 2)  # another grid (student: 3×3): resized
    layer = "features.4.2"
    with FeatureTap(student, [layer]) as tap:
        logits = student(x)
    step = StepTensors(logits, target, student_features=tap.outputs[layer], teacher_maps=teacher_maps,
                       teacher_target=target, step=0)
    obj = GradCAMAlign(student_layer=layer)
    ours = obj(step)
    ref = explanation_alignment_loss(differentiable_gradcam(student, x, target, layer), teacher_maps)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    assert student.features[0][0].weight.grad is not None  # the double backward reached the first conv
    # every=2: odd steps sit out with a 0 that carries no gradient.
    skipped = GradCAMAlign(every=2)(StepTensors(logits, target, student_features=tap.outputs[layer],
                                                teacher_maps=teacher_maps, teacher_target=target, step=1))
    assert skipped.item() == 0.0 and not skipped.requires_grad
    with pytest.raises(ValueError, match="every must be an integer"):
        GradCAMAlign(every=0)


def test_input_gradient_align_equals_the_loss_on_input_gradients() -> None:
    bundle = tiny_bundle(n=6, shape=(5,), classes=3)
    torch.manual_seed(0)
    student = build_model("mlp", bundle.spec, hidden=(7,))
    x = bundle.train.inputs.clone().requires_grad_(True)
    target = torch.tensor([0, 1, 2, 2, 1, 0])
    teacher_grads = torch.randn(6, 5)
    step = StepTensors(student(x), target, inputs=x, teacher_maps=teacher_grads, teacher_target=target)
    ours = InputGradientAlign()(step)
    ref = input_gradient_alignment_loss(input_gradients(student, bundle.train.inputs, target), teacher_grads)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours.backward()
    assert student.head.weight.grad is not None and torch.isfinite(student.head.weight.grad).all()


def test_hint_on_a_table_uses_a_linear_adapter() -> None:
    bundle = tiny_bundle(n=24, shape=(6,), classes=3)
    torch.manual_seed(0)
    teacher = build_model("mlp", bundle.spec, hidden=(10,))
    student = build_model("mlp", bundle.spec, hidden=(4,))
    objectives = build_objectives([{"name": "hint", "student_layer": "features.2", "teacher_layer": "features.2"},
                                   {"name": "ce"}])
    cache = SoftLabelCache.build(teacher, bundle.train, **teacher_cache_options(objectives))
    fit(student, bundle, objectives=objectives, teacher_cache=cache, epochs=1, batch_size=8, device="cpu")
    adapter = objectives[0].adapter
    assert isinstance(adapter, torch.nn.Linear) and (adapter.in_features, adapter.out_features) == (4, 10)
