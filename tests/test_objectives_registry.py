import pytest
import torch

from distilens.distill import CE, KD, LOSSES, StepTensors, build_objectives, kd_loss, requirements, weighted_sum
from distilens.errors import ConfigError, DistilensError
from distilens.registry import Registry


def test_registry_raises_on_duplicate_and_suggests_on_typo() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(2)
    with pytest.raises(DistilensError, match="did you mean 'alpha'"):
        reg.get("alpah")
    assert reg.names() == ["alpha"] and "alpha" in reg


def test_build_objectives_from_config_entries() -> None:
    objs = build_objectives([{"name": "kd", "weight": 0.9, "temperature": 2.0}, {"name": "ce", "weight": 0.1}])
    assert isinstance(objs[0], KD) and objs[0].temperature == 2.0 and objs[0].weight == 0.9
    assert isinstance(objs[1], CE)


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"name": "kdd"}], r"distill.losses\[0\]: unknown loss 'kdd' \(did you mean 'kd'\?\)"),
        ([{"name": "kd", "temp": 2}], "has no option 'temp'; its options are: weight, temperature"),
        ([{"name": "kd", "temperature": 0}], "temperature must be > 0"),
        ([{"name": "kd", "weight": 0.0}, {"name": "ce", "weight": 0.0}], "sum to 0"),
    ],
)
def test_build_objectives_errors_name_the_entry(entries: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_objectives(entries)


def test_weighted_sum_is_the_weighted_sum_of_terms() -> None:
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    objs = [KD(weight=0.7, temperature=3.0), CE(weight=0.3)]
    total, terms = weighted_sum(objs, StepTensors(s, y, t))
    expected = 0.7 * kd_loss(s, t, 3.0) + 0.3 * torch.nn.functional.cross_entropy(s, y)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"kd", "ce"}


def test_every_registered_logit_loss_builds_with_defaults_and_gives_a_finite_scalar() -> None:
    # Losses on logits alone; the feature/explanation ones are run through fit() in
    # test_objectives_conformance.py, which provides their tensors.
    s, t, y = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    for name in LOSSES.names():
        obj = LOSSES.get(name)()
        if requirements(obj) - {"teacher_logits"}:
            continue
        value = obj(StepTensors(s, y, t))
        assert value.dim() == 0 and torch.isfinite(value), name
        value.backward()
        assert s.grad is not None and torch.isfinite(s.grad).all()
        s.grad = None


def test_distilens_losses_exposes_every_registered_objective() -> None:
    import distilens as dl
    import distilens.distill as distill

    for name in LOSSES.names():
        cls = LOSSES.get(name)
        assert getattr(dl.losses, cls.__name__) is cls, name
        assert getattr(distill, cls.__name__) is cls, name
    assert dl.losses.LeafKD.name == "leaf_kd"


@pytest.mark.parametrize("module", ["distilens.evaluate", "distilens.distill.objectives.tree", "distilens.distill.trainer"])
def test_a_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
