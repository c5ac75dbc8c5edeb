import torch
from captum.attr import InputXGradient, LayerGradCam

from distilens.explain.differentiable import differentiable_gradcam, input_gradients
from distilens.models import get_layer
from distilens.testing import assert_no_hooks


def test_differentiable_gradcam_equals_captum(cnn_pair, digits) -> None:
    teacher, _ = cnn_pair
    x, target = digits.test.inputs[:6], torch.tensor([0, 1, 2, 3, 4, 5])
    ours = differentiable_gradcam(teacher, x, target)
    ref = LayerGradCam(teacher, get_layer(teacher, "features.4.2")).attribute(x, target=target, relu_attributions=True)
    torch.testing.assert_close(ours, ref.squeeze(1), rtol=1e-5, atol=1e-7)
    assert_no_hooks(teacher)


def test_input_gradients_equal_captum_and_carry_a_graph(cnn_pair, digits) -> None:
    _, student = cnn_pair
    x, target = digits.test.inputs[:4], torch.tensor([1, 2, 3, 4])
    grads = input_gradients(student, x, target)
    ref = InputXGradient(student).attribute(x.clone().requires_grad_(), target=target) / x
    torch.testing.assert_close(grads[x != 0], ref[x != 0], rtol=1e-4, atol=1e-6)
    # The map is a function of the weights: a loss on it back-propagates into them.
    grads.pow(2).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
