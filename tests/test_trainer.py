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
