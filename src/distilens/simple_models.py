"""What a teacher must beat to be worth distilling: the majority class, and a linear model on the same inputs.

A teacher no better than always predicting the most frequent training class has learnt
nothing a student could inherit, and one no better than a logistic regression on the same
inputs is not worth 50× the parameters of a student either. The run measures both on its
own split (the linear model only where it is cheap to fit: inputs held in memory, at most
:data:`MAX_CELLS` training values and :data:`MAX_FEATURES` columns, or text), and the
verdict's first line turns red when the teacher does not beat them
(:mod:`distilens.report.verdict`).

Example:
    >>> block = simple_models(bundle)
    >>> block["majority"]["accuracy"], block["linear"]["accuracy"]
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import DataBundle

__all__ = ["majority_class", "linear_model", "simple_models", "MAX_CELLS", "MAX_FEATURES"]

#: The linear model is fitted only when the training inputs hold at most this many values
#: (digits: 1,257 × 64 = 80k; shapes: 1,400 × 1,024 = 1.4M) and at most MAX_FEATURES columns.
MAX_CELLS = 50_000_000
MAX_FEATURES = 4096
#: Ridge strengths tried, as multiples of the mean variance of an input feature; Naive Bayes
#: smoothings tried on text. The best validation accuracy wins (ties: the first).
RIDGE_LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
NB_ALPHAS = (0.1, 0.3, 1.0)


def majority_class(train_targets: Tensor, test_targets: Tensor, class_names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Test accuracy of always predicting the most frequent training class.

    Example:
        >>> majority_class(torch.tensor([0, 0, 1]), torch.tensor([0, 1]))["accuracy"]
        0.5
    """
    counts = torch.bincount(train_targets.long())
    label = int(counts.argmax())
    out: dict[str, Any] = {"accuracy": float((test_targets == label).double().mean()), "class": label}
    if class_names is not None and label < len(class_names):
        out["class_name"] = str(class_names[label])
    return out


def _ridge(xtr: Tensor, ytr: Tensor, evaluate: list[tuple[Tensor, Tensor]], classes: int) -> list[tuple[float, list[float]]]:
    """Ridge regression on one-hot labels (a linear classifier in closed form), per strength: (λ, [accuracy per split])."""
    x = xtr.double()
    mu = x.mean(0)
    xc = x - mu
    y = torch.nn.functional.one_hot(ytr.long(), classes).double()
    ym = y.mean(0)
    gram = xc.T @ xc  # (D, D)
    rhs = xc.T @ (y - ym)
    scale = float(gram.diagonal().mean()) or 1.0
    out = []
    for lam in RIDGE_LAMBDAS:
        w = torch.linalg.solve(gram + lam * scale * torch.eye(gram.shape[0], dtype=gram.dtype), rhs)
        accs = [float((((xe.double() - mu) @ w + ym).argmax(1) == ye).double().mean()) for xe, ye in evaluate]
        out.append((lam, accs))
    return out


def _counts(ids: Tensor, pad_id: int, vocab: int) -> Tensor:
    """(N, L) token ids → (N, V) token counts (sparse), pads left out."""
    ids = ids.long()
    rows = torch.arange(ids.shape[0]).unsqueeze(1).expand_as(ids)
    keep = ids != pad_id
    index = torch.stack([rows[keep], ids[keep]])
    values = torch.ones(index.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(index, values, (ids.shape[0], vocab), check_invariants=True).coalesce()


def _naive_bayes(xtr: Tensor, ytr: Tensor, evaluate: list[tuple[Tensor, Tensor]], classes: int) -> list[tuple[float, list[float]]]:
    """Multinomial Naive Bayes on token counts (linear in the counts), per smoothing: (α, [accuracy per split])."""
    per_class = torch.stack([torch.sparse.sum(xtr.index_select(0, (ytr == c).nonzero().flatten()), 0).to_dense()
                             if bool((ytr == c).any()) else torch.zeros(xtr.shape[1], dtype=torch.float64) for c in range(classes)])
    prior = torch.bincount(ytr.long(), minlength=classes).double().clamp_min(1).log()
    out = []
    for alpha in NB_ALPHAS:
        log_theta = ((per_class + alpha) / (per_class.sum(1, keepdim=True) + alpha * xtr.shape[1])).log()  # (C, V)
        accs = [float(((torch.sparse.mm(xe, log_theta.T) + prior).argmax(1) == ye).double().mean()) for xe, ye in evaluate]
        out.append((alpha, accs))
    return out


def linear_model(bundle: DataBundle, *, max_cells: int = MAX_CELLS, max_features: int = MAX_FEATURES) -> dict[str, Any]:
    """A linear classifier on the same inputs as the models, its strength chosen on the validation split.

    Images and tables: ridge regression on one-hot labels over the normalised pixels or
    columns, flattened (closed form: seconds at most). Text: multinomial Naive Bayes over
    counts of the student's token ids (a linear model of the bag of words). Each strength
    is fitted on the training split; the best validation accuracy is scored on the test split.

    Returns:
        ``{"accuracy", "model", "strength", "val_accuracy", "seconds"}``, or
        ``{"skipped": why}`` when the inputs are read lazily or are too large.

    Example:
        >>> linear_model(load_dataset("builtin:digits"))["model"]
        'ridge classifier on pixels'
    """
    if bundle.train.lazy:
        return {"skipped": "the images are read lazily from the files"}
    text = bundle.spec.kind == "text"
    features = bundle.spec.vocab_size if text else int(np.prod(bundle.spec.shape))
    if not text and (len(bundle.train) * features > max_cells or features > max_features):
        return {"skipped": f"{len(bundle.train):,} training inputs of {features:,} values are too many to fit one cheaply"}
    t0 = time.perf_counter()
    classes = bundle.spec.num_classes
    splits = [getattr(bundle, s) for s in ("train", "val", "test")]
    if text:
        xs = [_counts(s.inputs, bundle.spec.pad_id, features) for s in splits]
        path = _naive_bayes(xs[0], splits[0].targets, [(xs[1], splits[1].targets), (xs[2], splits[2].targets)], classes)
        model = "naive Bayes on token counts"
    else:
        xs = [s.inputs.reshape(len(s), -1) for s in splits]
        path = _ridge(xs[0], splits[0].targets, [(xs[1], splits[1].targets), (xs[2], splits[2].targets)], classes)
        model = "ridge classifier on " + ("pixels" if bundle.spec.kind == "image" else "columns")
    strength, (val_acc, test_acc) = max(path, key=lambda p: p[1][0])  # the first of equal validation accuracies
    return {"accuracy": test_acc, "model": model, "strength": strength, "val_accuracy": val_acc,
            "seconds": round(time.perf_counter() - t0, 3)}


def simple_models(bundle: DataBundle) -> dict[str, Any]:
    """metrics.json's ``simple_models``: ``majority`` (:func:`majority_class`) and ``linear`` (:func:`linear_model`)."""
    return {
        "majority": majority_class(bundle.train.targets, bundle.test.targets, bundle.spec.class_names),
        "linear": linear_model(bundle),
    }
