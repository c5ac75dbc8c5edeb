import copy

import torch

from distilens.distill import CE, KD, SoftLabelCache, fit, kd_loss
from distilens.models import build_model
from distilens.testing import LinearModel, tiny_bundle


def test_fit_learns_and_keeps_the_best_epoch() -> None:
    bundle = tiny_bundle()
    torch.manual_seed(0)
    model = build_model("cnn", bundle.spec, width=4)
    result = fit(model, bundle, epochs=6, batch_size=16, lr=1e-2, device="cpu")
    assert len(result.history) == 6
    best = max(r["val_accuracy"] for r in result.history)
    assert result.best_val_accuracy == best
    assert result.history[result.best_epoch - 1]["val_accuracy"] == best
    assert result.history[-1]["train_accuracy"] > 0.5


def test_same_seed_same_weights() -> None:
    bundle = tiny_bundle()
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("cnn", bundle.spec, width=4)
        fit(model, bundle, epochs=2, batch_size=16, seed=3, device="cpu")
        weights.append(model.state_dict())
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_one_trainer_step_equals_a_hand_written_step() -> None:
    bundle = tiny_bundle(n=12, shape=(4,), classes=3)
    torch.manual_seed(0)
    model = LinearModel(torch.randn(3, 4) * 0.1)
    reference = copy.deepcopy(model)
    cache = SoftLabelCache(torch.randn(12, 3), key="x")

    fit(model, bundle, objectives=[KD(weight=0.7, temperature=2.0), CE(weight=0.3)], teacher_cache=cache,
        epochs=1, batch_size=12, lr=0.1, weight_decay=0.0, warmup_epochs=0, grad_clip=None, seed=5, device="cpu")

    # By hand: the same shuffled batch (all 12 samples), the same loss, one AdamW step.
    order = torch.randperm(12, generator=torch.Generator().manual_seed(5))
    x, y = bundle.train.inputs[order], bundle.train.targets[order]
    opt = torch.optim.AdamW(reference.parameters(), lr=0.1, weight_decay=0.0)
    logits = reference(x)
    loss = 0.7 * kd_loss(logits, cache.logits[order], 2.0) + 0.3 * torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


# ---------------------------------------------------------------- checkpoints, resume, guards
import pytest  # noqa: E402

from distilens.distill import DKD, Hint, StepTensors  # noqa: E402
from distilens.distill.objectives import Objective  # noqa: E402
from distilens.distill.trainer import TrainingDiverged  # noqa: E402
from distilens.errors import DistilensError  # noqa: E402


class _Crash(Exception):
    pass


def _student_and_cache(bundle):
    torch.manual_seed(0)
    model = build_model("cnn", bundle.spec, width=4)
    teacher = build_model("cnn", bundle.spec, width=6)
    cache = SoftLabelCache.build(teacher, bundle.train, features=["auto"])
    return model, cache


def test_resume_after_a_crash_is_bit_identical_to_an_uninterrupted_run(tmp_path) -> None:
    bundle = tiny_bundle()
    kwargs = dict(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=1, seed=3, device="cpu")

    def objectives():
        return [KD(weight=0.5), CE(weight=0.5), Hint(weight=0.1)]  # Hint: an adapter in the optimiser

    model, cache = _student_and_cache(bundle)
    torch.manual_seed(42)  # global RNG state at the start; resume must restore it mid-run
    full = fit(model, bundle, objectives=objectives(), teacher_cache=cache, **kwargs)
    uninterrupted = {k: v.clone() for k, v in model.state_dict().items()}

    model, cache = _student_and_cache(bundle)
    ck = tmp_path / "ckpt.pt"

    def crash_after_epoch_2(row):
        if row["epoch"] == 2:
            raise _Crash

    torch.manual_seed(42)
    with pytest.raises(_Crash):
        fit(model, bundle, objectives=objectives(), teacher_cache=cache, checkpoint_path=ck,
            on_epoch=crash_after_epoch_2, **kwargs)
    model, cache = _student_and_cache(bundle)  # a fresh process: new model, same init
    torch.manual_seed(7)  # whatever the RNG is now, the checkpoint's state wins
    resumed = fit(model, bundle, objectives=objectives(), teacher_cache=cache, checkpoint_path=ck, resume=True, **kwargs)
    assert resumed.resumed_from == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, uninterrupted[k]), k
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert resumed.best_epoch == full.best_epoch


def test_resume_refuses_other_settings(tmp_path) -> None:
    bundle = tiny_bundle()
    ck = tmp_path / "c.pt"
    fit(build_model("cnn", bundle.spec, width=4), bundle, epochs=1, batch_size=16, device="cpu", checkpoint_path=ck)
    with pytest.raises(DistilensError, match="batch_size=16 but this run has batch_size=8"):
        fit(build_model("cnn", bundle.spec, width=4), bundle, epochs=1, batch_size=8, device="cpu",
            checkpoint_path=ck, resume=True)


class _BlowUp(Objective):
    """NaN from the 3rd step of epoch 2 on (a stand-in for a diverging loss)."""

    name = "blowup"

    def forward(self, step: StepTensors) -> torch.Tensor:
        bad = step.epoch == 2 and step.step is not None and step.step >= 4 + 2
        return step.student_logits.sum() * (float("nan") if bad else 0.0)


def test_nan_guard_names_epoch_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    bundle = tiny_bundle()  # 60 samples, batch 16: 4 steps per epoch
    ck = tmp_path / "c.pt"
    model = build_model("cnn", bundle.spec, width=4)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3 of 4 \(terms: loss, blowup\)") as info:
        fit(model, bundle, objectives=[CE(), _BlowUp()], epochs=3, batch_size=16, device="cpu", checkpoint_path=ck)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, DistilensError)
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    bundle = tiny_bundle()
    model = build_model("cnn", bundle.spec, width=4)
    result = fit(model, bundle, epochs=30, batch_size=16, lr=0.0, device="cpu", early_stopping=2, monitor="val_loss")
    # lr = 0: the first epoch sets the mark, the next two do not beat it.
    assert result.stopped_early and len(result.history) == 3


def test_tensorboard_is_skipped_with_a_warning_when_not_installed(tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    bundle = tiny_bundle()
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        fit(build_model("cnn", bundle.spec, width=4), bundle, epochs=1, batch_size=32, device="cpu",
            tensorboard_dir=tmp_path / "tb")


def test_objectives_see_the_epoch_and_dkd_warms_up() -> None:
    seen: list[tuple[int | None, int | None]] = []

    class Spy(Objective):
        name = "spy"

        def forward(self, step: StepTensors) -> torch.Tensor:
            seen.append((step.epoch, step.step))
            return step.student_logits.sum() * 0.0

    bundle = tiny_bundle()
    fit(build_model("cnn", bundle.spec, width=4), bundle, objectives=[CE(), Spy()], epochs=2, batch_size=32, device="cpu")
    assert seen == [(1, 0), (1, 1), (2, 2), (2, 3)]
    dkd = DKD(warmup_epochs=4)
    assert [dkd.warmup_factor(e) for e in (1, 2, 4, 9, None)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert DKD(warmup_epochs=0).warmup_factor(1) == 1.0


def test_objective_parameters_are_optimised_with_the_student() -> None:
    bundle = tiny_bundle()
    model, cache = _student_and_cache(bundle)
    hint = Hint(student_layer="features.1", teacher_layer="auto")
    fit(model, bundle, objectives=[CE(), hint], teacher_cache=cache, epochs=1, batch_size=16, device="cpu")
    assert isinstance(hint.adapter, torch.nn.Conv2d) and hint.adapter.in_channels == 4 and hint.adapter.out_channels == 12
    before = hint.adapter.weight.detach().clone()
    fit(model, bundle, objectives=[hint], teacher_cache=cache, epochs=1, batch_size=16, device="cpu")
    assert not torch.equal(before, hint.adapter.weight.detach())


def test_missing_cache_entries_fail_before_training(digits) -> None:
    bundle = tiny_bundle()
    model, _ = _student_and_cache(bundle)
    plain = SoftLabelCache.build(build_model("cnn", bundle.spec, width=6), bundle.train)
    with pytest.raises(ValueError, match=r"lacks features\['auto'\]"):
        fit(model, bundle, objectives=[Hint()], teacher_cache=plain, epochs=1, device="cpu")


def test_an_epoch_reads_values_from_the_device_a_fixed_number_of_times_not_once_per_step(monkeypatch) -> None:
    """No host sync per step: distilens code calls item/tolist/float/int/bool on tensors as often for 8 steps as for 2."""
    import sys
    from collections import Counter

    reads: Counter[str] = Counter()

    def counting(name: str):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "/distilens/" in caller and "/tests/" not in caller:
                reads[name] += 1
            return real(self, *args, **kwargs)

        return read

    bundle = tiny_bundle(n=64)
    model, cache = _student_and_cache(bundle)
    per_run = []
    for batch_size in (32, 8):
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
                m.setattr(torch.Tensor, name, counting(name))
            fit(model, bundle, objectives=[KD(), CE(weight=0.1), Hint(weight=0.1)], teacher_cache=cache, epochs=1,
                batch_size=batch_size, device="cpu")
        per_run.append(dict(reads))
        reads.clear()
    assert per_run[0] == per_run[1] and sum(per_run[0].values()) > 0
