"""fit_linear_head: the same optimum as scikit-learn's LogisticRegression, converged, λ chosen on validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distilens.distill.head_fit import DEFAULT_WEIGHT_DECAYS, balanced_class_weights, fit_linear_head


def _problem(n: int = 300, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three imbalanced, overlapping Gaussian classes with features on different scales."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.zeros(n // 2), torch.ones(n // 3), torch.full((n - n // 2 - n // 3,), 2.0)]).long()
    centres = torch.randn(3, d, generator=g)
    x = centres[y] + 1.5 * torch.randn(n, d, generator=g)
    return x * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0])[:d] + 4.0, y


def test_balanced_weights_match_scikit_learn() -> None:
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0, 0, 0, 1, 2, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert balanced_class_weights(y, 3).tolist() == pytest.approx(expected.tolist())
    assert balanced_class_weights(torch.tensor([0, 0, 2]), 3).tolist() == pytest.approx([0.75, 0.0, 1.5])


@pytest.mark.parametrize("class_weight", ["balanced", None])
def test_same_optimum_as_scikit_learn(class_weight: str | None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _problem()
    decay = 1e-2
    fit = fit_linear_head(x, y, x[:50], y[:50], class_weight=class_weight, weight_decays=[decay], tol=1e-9)
    assert fit.converged and fit.grad_norm <= 1e-9 and fit.weight_decay == decay
    # scikit-learn on the same standardised features, C = 1 / (λ N), multinomial (its default for 3 classes).
    scaled = StandardScaler().fit_transform(x.double().numpy())
    ref = LogisticRegression(C=1.0 / (decay * len(y)), class_weight=class_weight, tol=1e-12, max_iter=10_000)
    ref.fit(scaled, y.numpy())
    std = x.double().std(0, unbiased=False)
    w_std = fit.weight.double() * std  # back to the standardised space
    assert torch.allclose(w_std, torch.tensor(ref.coef_), atol=1e-4)
    ours = torch.softmax(x.double() @ fit.weight.double().T + fit.bias.double(), 1)
    theirs = torch.tensor(ref.predict_proba(scaled))
    assert torch.allclose(ours, theirs, atol=1e-4)  # biases agree up to the softmax's free shift
    head = fit.load_into(nn.Linear(5, 3))
    assert torch.allclose(torch.softmax(head(x), 1).double(), ours, atol=1e-5)


def test_gradient_vanishes_at_the_returned_weights_and_lambda_is_chosen_on_validation() -> None:
    x_all, y_all = _problem(n=500, seed=1)
    order = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    x, y, xv, yv = x_all[order[:300]], y_all[order[:300]], x_all[order[300:]], y_all[order[300:]]
    fit = fit_linear_head(x, y, xv, yv, weight_decays=[10.0, 1e-3, 1e-9], tol=1e-8)
    assert [row["weight_decay"] for row in fit.path] == [10.0, 1e-3, 1e-9]  # strongest first
    best = min(fit.path, key=lambda row: row["val_loss"])
    assert fit.weight_decay == best["weight_decay"] and fit.weight_decay != 10.0  # 10: everything shrunk to the prior
    assert fit.at_grid_edge == (fit.weight_decay == 1e-9)
    assert all(row["grad_norm"] <= 1e-8 for row in fit.path) and fit.converged
    # The gradient of the objective, recomputed here in the raw feature space (the
    # standardised problem's gradient scaled by the feature std) is ~0 at the returned fit.
    mean, std = x.double().mean(0), x.double().std(0, unbiased=False)
    w = (fit.weight.double() * std).requires_grad_(True)
    b = (fit.bias.double() + fit.weight.double() @ mean).requires_grad_(True)
    s = balanced_class_weights(y, 3)[y]
    ce = nn.functional.cross_entropy(((x.double() - mean) / std) @ w.T + b, y, reduction="none")
    loss = (s * ce).sum() / s.sum() + 0.5 * fit.weight_decay * (w * w).sum()
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-5 and float(b.grad.abs().max()) < 1e-5  # float32 weights: ~1e-7 off
    for bad in ({"weight_decays": []}, {"weight_decays": [0.0]}, {"class_weight": "auto"}):
        with pytest.raises(ValueError):
            fit_linear_head(x, y, xv, yv, **bad)  # type: ignore[arg-type]


class _FrozenEncoderTeacher(nn.Module):
    """A FrozenEncoderModel: a fixed random projection of its inputs, then a linear head."""

    frozen_encoder = True

    def __init__(self, d_in: int, d_features: int, classes: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, d_features)
        self.encoder.requires_grad_(False)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(d_features, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))


def test_a_frozen_encoder_teachers_head_is_fitted_to_convergence_not_by_epochs() -> None:
    """fit_teacher solves the head's convex problem: the head equals fit_linear_head on the features,
    the encoder is untouched, AdamW's settings do not apply, and the fit is reported."""
    from distilens.data.bundle import DataBundle, InputSpec, Split
    from distilens.distill.teacher_fit import fit_teacher

    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.8).long() + (x[:, 2] > 1.2).long()  # three imbalanced classes
    spec = InputSpec(kind="table", shape=(6,), class_names=("a", "b", "c"))
    bundle = DataBundle("toy", Split(x[:100], y[:100]), Split(x[100:130], y[100:130]), Split(x[130:], y[130:]), spec)
    torch.manual_seed(0)
    teacher = _FrozenEncoderTeacher(6, 12, 3)
    encoder = {k: v.clone() for k, v in teacher.encoder.state_dict().items()}
    seen: list[dict] = []
    result = fit_teacher(teacher, bundle, epochs=15, lr=1e-3, device="cpu", seed=0, on_epoch=seen.append)
    with torch.no_grad():  # fit_linear_head turns gradients on for itself
        expected = fit_linear_head(teacher.forward_features(x[:100]), y[:100], teacher.forward_features(x[100:130]),
                                   y[100:130], num_classes=3)
    torch.testing.assert_close(teacher.head.weight.detach(), expected.weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(teacher.head.bias.detach(), expected.bias, rtol=0, atol=1e-6)
    assert all(torch.equal(v, encoder[k]) for k, v in teacher.encoder.state_dict().items())
    assert not teacher.training  # left in eval mode, like fit
    assert len(result.history) == 1 and seen == result.history and result.best_epoch == 1
    assert {"epoch", "loss", "train_accuracy", "val_loss", "val_accuracy", "time_s"} <= set(result.history[0])
    assert "weight_decay" not in result.history[0]  # a history row holds losses and accuracies; the decay is in head_fit
    fit = result.head_fit
    assert fit is not None and fit["converged"] and fit["weight_decay"] == expected.weight_decay
    assert len(fit["path"]) == len(DEFAULT_WEIGHT_DECAYS) and result.best_val_accuracy == max(
        r["val_accuracy"] for r in fit["path"] if r["weight_decay"] == fit["weight_decay"])
    with torch.no_grad():
        train_acc = float((teacher(x[:100]).argmax(1) == y[:100]).float().mean())
    assert result.history[0]["train_accuracy"] == pytest.approx(train_acc)
    assert train_acc > float((y[:100] == y[:100].mode().values).float().mean())  # above the majority class
