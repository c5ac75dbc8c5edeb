"""A linear head on fixed features, fitted to convergence: multinomial logistic regression by L-BFGS.

A teacher whose encoder is frozen (``teacher.args.finetune: head``) only has a linear head
to learn, and on fixed features that is a convex problem: the weighted mean cross-entropy
plus an L2 penalty has one optimum, which a full-batch quasi-Newton method reaches in a
few dozen steps. 15 epochs of AdamW at a fixed learning rate need not reach it: on a small
imbalanced review set they left the head predicting the majority class (issue 17).

:func:`fit_linear_head` standardises the features (train mean and std; the penalty then
weighs every feature alike), fits one model per weight decay on a grid, from the largest
decay down, each warm-started from the previous, with ``torch.optim.LBFGS`` (strong-Wolfe
line search) in float64 until the gradient's largest entry is below ``tol``, and keeps the
decay whose model has the lowest validation cross-entropy (weighted like the training
loss). The returned weights act on the raw features: the standardisation is folded in.

Example:
    >>> fit = fit_linear_head(train_x, train_y, val_x, val_y)
    >>> head = nn.Linear(train_x.shape[1], fit.weight.shape[0]); fit.load_into(head)
    >>> fit.weight_decay, fit.converged
    (0.001, True)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HeadFit", "fit_linear_head", "balanced_class_weights", "DEFAULT_WEIGHT_DECAYS"]

#: λ of the mean-loss form (λ/2 · ‖W‖²); scikit-learn's C is 1 / (λ · N) for N training rows.
_RESTARTS = 5
#: The grid reaches up to 3: MiniLM's 384 standardised features on ~800 review snippets validated
#: best at 0.3 (0.1, the top of a grid ending there, left the teacher 1.7 points lower on test).
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (3.0, 1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6)


@dataclass
class HeadFit:
    """The fitted head and how it was chosen.

    Attributes:
        weight: (C, D) float32 weights on the raw features.
        bias: (C,) float32 biases.
        weight_decay: The chosen λ.
        grad_norm: Largest absolute entry of the objective's gradient at the chosen fit
            (in the standardised space where it was minimised).
        converged: ``grad_norm <= tol`` was reached within ``max_iter`` iterations.
        path: One row per λ tried: weight_decay, val_loss, val_accuracy, train_loss,
            iterations, grad_norm.
    """

    weight: Tensor
    bias: Tensor
    weight_decay: float
    grad_norm: float
    converged: bool
    path: list[dict[str, float]] = field(default_factory=list)

    @property
    def at_grid_edge(self) -> bool:
        """The chosen λ is the largest or smallest tried (a wider grid might validate better)."""
        decays = [row["weight_decay"] for row in self.path]
        return len(decays) > 1 and self.weight_decay in (max(decays), min(decays))

    def load_into(self, linear: nn.Linear) -> nn.Linear:
        """Copy the weights into ``linear`` (C outputs, D inputs) and return it."""
        with torch.no_grad():
            linear.weight.copy_(self.weight.to(linear.weight))
            linear.bias.copy_(self.bias.to(linear.bias))
        return linear


def balanced_class_weights(targets: Tensor, num_classes: int) -> Tensor:
    """(C,) float64 ``N / (K · N_c)`` for the K classes present (scikit-learn's "balanced"); 0 for absent classes."""
    counts = torch.bincount(targets, minlength=num_classes).to(torch.float64)
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = len(targets) / (int(present.sum()) * counts[present])
    return weights


def _objective(x: Tensor, y: Tensor, w: Tensor, b: Tensor, sample_w: Tensor, decay: float) -> Tensor:
    """Σ_i s_i · CE(W x_i + b, y_i) / Σ_i s_i + λ/2 · ‖W‖² (the bias is not penalised)."""
    ce = F.cross_entropy(x @ w.T + b, y, reduction="none")
    return (sample_w * ce).sum() / sample_w.sum() + 0.5 * decay * (w * w).sum()


def _minimise(x: Tensor, y: Tensor, w: Tensor, b: Tensor, sample_w: Tensor, decay: float, tol: float,
              max_iter: int) -> tuple[int, float]:
    """Minimise :func:`_objective` in place over (w, b) with L-BFGS; returns (iterations, final max |gradient|)."""
    iterations, grad = 0, float("inf")
    # L-BFGS can stop short of tol when its curvature history goes stale (a search direction
    # that is no longer a descent direction at float64 rounding); a fresh start from the same
    # point continues. A few restarts at most, within max_iter iterations in all.
    for _ in range(_RESTARTS):
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter - iterations, max_eval=2 * max_iter,
                                tolerance_grad=tol, tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = _objective(x, y, w, b, sample_w, decay)
            loss.backward()
            return loss

        opt.step(closure)
        iterations += int(opt.state[w]["n_iter"])
        closure()
        grad = max(float(w.grad.abs().max()), float(b.grad.abs().max()))  # type: ignore[union-attr]
        if grad <= tol or iterations >= max_iter:
            break
    return iterations, grad


#: Below this many multiply-adds per logits evaluation (N · D · C), L-BFGS runs on one thread:
#: its steps are many tiny tensor operations, and on a busy 2-core machine two threads made a
#: 100 × 12 × 3 fit over the default grid 6× slower (44.5 s against 7.5 s).
SMALL_PROBLEM = 4_000_000


@contextlib.contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """One intra-op thread for a problem of ``work`` multiply-adds below :data:`SMALL_PROBLEM` (restored after)."""
    before = torch.get_num_threads()
    if work < SMALL_PROBLEM and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_linear_head(
    train_features: Tensor, train_targets: Tensor, val_features: Tensor, val_targets: Tensor,
    *, class_weight: Literal["balanced"] | None = "balanced", weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    num_classes: int | None = None, standardize: bool = True, tol: float = 1e-6, max_iter: int = 500,
) -> HeadFit:
    """Multinomial logistic regression on fixed features, λ chosen on the validation split.

    Minimises ``Σ_i s_i · CE(W x_i + b, y_i) / Σ_i s_i + λ/2 · ‖W‖²`` over W (C, D) and b
    (C,) for each λ in ``weight_decays``, where ``s_i`` is the weight of ``y_i``'s class
    (:func:`balanced_class_weights`, or 1). This is scikit-learn's
    ``LogisticRegression(C=1 / (λ · N), class_weight=...)`` objective divided by C·N, so
    the two have the same optimum (tested).

    Args:
        train_features: (N, D) features of the training rows.
        train_targets: (N,) int64 classes.
        val_features: (M, D) features of the validation rows (M >= 1).
        val_targets: (M,) int64 classes.
        class_weight: ``"balanced"`` (weights N / (K · N_c)) or ``None`` (all 1).
        weight_decays: The λ grid (each > 0); the lowest weighted validation cross-entropy wins.
        num_classes: C (default: the largest class id seen, plus one).
        standardize: Fit on features scaled to train mean 0, std 1 (constant features: 1).
        tol: Stop when the gradient's largest entry is at most this.
        max_iter: Most L-BFGS iterations per λ.

    Returns:
        A :class:`HeadFit`.
    """
    if train_features.dim() != 2 or train_features.shape[0] != train_targets.shape[0] or len(train_targets) < 2:
        raise ValueError(f"need (N >= 2, D) train features and (N,) targets, got {tuple(train_features.shape)}, "
                         f"{tuple(train_targets.shape)}")
    if val_features.shape[0] != val_targets.shape[0] or len(val_targets) < 1:
        raise ValueError("need (M >= 1, D) validation features and (M,) targets")
    if not weight_decays or min(weight_decays) <= 0:
        raise ValueError(f"weight_decays must be positive, got {list(weight_decays)}")
    if class_weight not in ("balanced", None):
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    c = int(num_classes) if num_classes is not None else int(max(train_targets.max(), val_targets.max())) + 1
    x = train_features.detach().to(torch.float64)
    xv = val_features.detach().to(torch.float64)
    y, yv = train_targets.long(), val_targets.long()
    mean = x.mean(0) if standardize else x.new_zeros(x.shape[1])
    std = x.std(0, unbiased=False) if standardize else x.new_ones(x.shape[1])
    std = torch.where(std > 0, std, torch.ones_like(std))
    x, xv = (x - mean) / std, (xv - mean) / std
    class_w = balanced_class_weights(y, c) if class_weight == "balanced" else torch.ones(c, dtype=torch.float64)
    w = torch.zeros(c, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    path: list[dict[str, float]] = []
    best: tuple[float, Tensor, Tensor, float, float] | None = None
    with _threads_for(x.shape[0] * x.shape[1] * c):
        for decay in sorted(weight_decays, reverse=True):  # strongest first: each fit warm-starts the next
            with torch.enable_grad():  # callers may hold no_grad (e.g. around their feature pass)
                iterations, grad = _minimise(x, y, w, b, class_w[y], float(decay), tol, max_iter)
            with torch.no_grad():
                logits = xv @ w.T + b
                val_loss = float((class_w[yv] * F.cross_entropy(logits, yv, reduction="none")).sum()
                                 / class_w[yv].sum().clamp_min(1e-300))
                val_acc = float((logits.argmax(1) == yv).double().mean())
                train_loss = float(_objective(x, y, w, b, class_w[y], float(decay)))
            path.append({"weight_decay": float(decay), "val_loss": val_loss, "val_accuracy": val_acc,
                         "train_loss": train_loss, "iterations": float(iterations), "grad_norm": grad})
            if best is None or val_loss < best[0]:
                best = (val_loss, w.detach().clone(), b.detach().clone(), float(decay), grad)
    assert best is not None
    _, w_best, b_best, decay, grad = best
    weight = w_best / std  # logits = W (x - μ) / σ + b = (W / σ) x + (b - (W / σ) μ)
    bias = b_best - weight @ mean
    return HeadFit(weight.float(), bias.float(), decay, grad, grad <= tol, path)
