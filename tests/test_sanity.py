import copy

import pytest
import torch
import torch.nn.functional as F

from distilens.explain import cascading_randomization
from distilens.explain.sanity import cascade_steps, parameter_layers
from distilens.models import build_model
from distilens.testing import assert_no_hooks


@pytest.fixture(scope="module")
def trained(digits):
    """A width-4 CNN trained for about a second on 512 digits (mini-batches of 64)."""
    torch.manual_seed(0)
    model = build_model("cnn", digits.spec, width=4)
    x, y = digits.train.inputs[:512], digits.train.targets[:512]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(8):
        for i in torch.randperm(512).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(digits.test.inputs).argmax(1) == digits.test.targets).float().mean()
    assert acc > 0.7, f"the fixture model did not learn ({acc:.2f})"
    return model


def test_layers_run_from_the_output_to_the_input(trained) -> None:
    layers = parameter_layers(trained)
    assert layers[0] == "head" and layers[-1] == "features.0.0"


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_similarity_falls_when_a_trained_model_is_randomised(method, trained, digits) -> None:
    before = copy.deepcopy(trained.state_dict())
    x = digits.test.inputs[:16]
    state = torch.random.get_rng_state()
    out = cascading_randomization(trained, x, method=method, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items()), "the original must be untouched"
    assert_no_hooks(trained)
    assert out["layers"] == parameter_layers(trained)
    assert len(out["spearman"]) == len(out["abs_spearman"]) == len(out["ssim"]) == len(out["layers"])
    # Fully randomised, the maps have (almost) nothing in common with the trained ones.
    assert out["spearman"][-1] < 0.4 and out["ssim"][-1] < 0.4
    # And identical maps would score 1: the similarity has fallen from there at every step.
    assert max(out["abs_spearman"]) < 0.9
    # Seeded: the same numbers again.
    assert cascading_randomization(trained, x, method=method, seed=0) == out


def test_max_layers_stops_early_and_mlps_work(trained, digits) -> None:
    out = cascading_randomization(trained, digits.test.inputs[:4], method="gradcam", max_layers=1)
    assert out["layers"] == ["head"] and len(out["spearman"]) == 1
    torch.manual_seed(0)
    mlp = build_model("mlp", digits.spec, hidden=(8,)).eval()
    rows = digits.test.inputs[:4]
    out = cascading_randomization(mlp, rows, method="integrated_gradients", n_steps=8)
    assert out["layers"] == ["head", "features.1"]
    # An MLP on images gives input-shaped maps: SSIM applies; the sanity check still works.
    assert all(isinstance(v, float) for v in out["spearman"])


def test_a_repeated_block_is_one_step_of_the_cascade() -> None:
    from distilens.models.text import REFERENCE_TEXT_SPEC

    torch.manual_seed(0)
    model = build_model("tiny_transformer", REFERENCE_TEXT_SPEC, dim=16, layers=2, heads=2).eval()
    assert parameter_layers(model) == ["head", "norm", "blocks.1", "blocks.0", "positions", "embedding"]
    ids = torch.randint(1, REFERENCE_TEXT_SPEC.vocab_size, (3, 7))
    before = copy.deepcopy(model.blocks[0].state_dict())
    out = cascading_randomization(model, ids, method="input_x_gradient", max_layers=3)
    assert out["layers"] == ["head", "norm", "blocks.1"]
    assert all(torch.equal(v, model.blocks[0].state_dict()[k]) for k, v in before.items())  # on a copy

    # One step re-initialises every parameter module inside the block; every module is in one step.
    work = copy.deepcopy(model)
    steps = cascade_steps(work)
    inside = {id(m) for m in work.blocks[1].modules() if any(True for _ in m.parameters(recurse=False))}
    assert {id(m) for m in steps["blocks.1"]} == inside and len(inside) > 2
    assert sum(len(v) for v in steps.values()) == sum(
        1 for n, m in work.named_modules() if n and any(True for _ in m.parameters(recurse=False)))
