"""Teacher training that skips a frozen encoder: its features are computed once, the head is fitted on them.

A teacher whose ``frozen_encoder`` is True (the MiniLM teacher with ``finetune: head``)
maps ids to features by a fixed function, so its head is a linear model on fixed features:
one encoder pass over the train and val sets (:func:`encode_split`), then multinomial
logistic regression solved to convergence (:func:`~distilens.distill.head_fit.fit_linear_head`,
L-BFGS, balanced class weights, weight decay chosen on validation). 15 epochs of AdamW
on the same problem left a small imbalanced review set's teacher at the majority class
(issue 17). Everything else trains with :func:`fit`.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.bundle import DataBundle, Split, iterate_batches
from ..models.capabilities import FeatureModel, FrozenEncoderModel, TokenModel
from ..models.modes import eval_mode
from ..runtime import resolve_device
from .head_fit import fit_linear_head
from .state import FitResult
from .trainer import fit

__all__ = ["fit_teacher", "encode_split", "teacher_bundle"]


def teacher_bundle(bundle: DataBundle) -> DataBundle:
    """``bundle`` as the teacher reads it: its own token ids and spec where its tokenizer differs, else ``bundle``."""
    return bundle.for_teacher()


@torch.no_grad()
def _features(model: FeatureModel, split: Split, batch_size: int) -> Tensor:
    """(N, D) float32 ``forward_features`` of ``split`` in batches, in eval mode (mode restored), on the CPU."""
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    with eval_mode(model):  # type: ignore[arg-type]
        return torch.cat([model.forward_features(x.to(device)).float().cpu() for x, _, _ in iterate_batches(split, batch_size)])


def encode_split(model: nn.Module, split: Split, batch_size: int = 256) -> Tensor:
    """(N, D) float32 ``model.forward_features`` of every row of ``split``, in eval mode (mode restored), on the CPU.

    Token ids of a :class:`~distilens.models.capabilities.TokenModel` are encoded in batches
    of similar length, each cut to its longest row: trailing pads do not change a text
    model's output, and short snippets padded to L would cost up to L/length times more.
    """
    if split.inputs.is_floating_point() or not isinstance(model, TokenModel):
        return _features(model, split, batch_size)  # type: ignore[arg-type]
    lengths = (split.inputs != model.pad_id).sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    chunks = []
    for start in range(0, len(split), batch_size):
        idx = order[start : start + batch_size]
        width = max(int(lengths[idx].max()), 1)
        chunks.append(_features(model, Split(split.inputs[idx, :width], split.targets[idx]), batch_size))
    sorted_features = torch.cat(chunks)
    features = torch.empty_like(sorted_features)
    features[order] = sorted_features  # back to the split's row order
    return features


def fit_teacher(
    model: nn.Module, bundle: DataBundle, *, encode_batch_size: int = 256, features: dict[str, Tensor] | None = None,
    **fit_args: Any,
) -> FitResult:
    """Train a teacher: the head alone on cached features when its encoder is frozen, else :func:`fit`.

    Args:
        model: The teacher; a :class:`~distilens.models.capabilities.FrozenEncoderModel`
            whose ``frozen_encoder`` is True has its ``head`` (after its ``dropout``, if it
            has one) fitted to convergence on the encoder's features (the optimiser
            settings in ``fit_args`` do not apply to it).
        bundle: The data.
        encode_batch_size: Rows per encoder forward when computing the features.
        features: ``{"train": (N, D), "val": (M, D)}`` features computed earlier by
            :func:`encode_split` (e.g. kept on disk across runs); computed here when ``None``.
        **fit_args: Passed to :func:`fit` (epochs, lr, seed, device, checkpoint_path …).

    Example:
        >>> teacher = build_model("minilm", bundle.spec, finetune="head")
        >>> fit_teacher(teacher, bundle).head_fit["converged"]
        True
    """
    if not (isinstance(model, FrozenEncoderModel) and model.frozen_encoder):
        return fit(model, bundle, **fit_args)
    return _fit_head(model, bundle, features, encode_batch_size, fit_args)


def _fit_head(
    model: nn.Module, bundle: DataBundle, features: dict[str, Tensor] | None, encode_batch_size: int,
    fit_args: dict[str, Any],
) -> FitResult:
    """Fit the teacher's linear head (shared, so the teacher is trained in place) to convergence on its encoder's features.

    The head on fixed features is multinomial logistic regression, a convex problem:
    :func:`~distilens.distill.head_fit.fit_linear_head` solves it by L-BFGS with balanced
    class weights and the weight decay chosen on the validation split. ``epochs``, ``lr``
    and the other optimiser settings in ``fit_args`` do not apply; ``on_epoch`` is called
    once with the chosen fit's row.
    """
    device = fit_args.get("device", "auto")
    model.to(resolve_device(device) if isinstance(device, str) else device)
    start = time.perf_counter()
    if features is None:
        features = {"train": encode_split(model, bundle.train, encode_batch_size),
                    "val": encode_split(model, bundle.val, encode_batch_size)}
    head: nn.Linear = model.head  # type: ignore[assignment]
    found = fit_linear_head(features["train"], bundle.train.targets, features["val"], bundle.val.targets,
                            num_classes=bundle.spec.num_classes)
    found.load_into(head)
    model.eval()  # the state fit leaves a model in
    with torch.no_grad():
        train_logits = head(features["train"].to(head.weight))
        train_loss = float(F.cross_entropy(train_logits, bundle.train.targets.to(train_logits.device)))
        train_accuracy = float((train_logits.argmax(1).cpu() == bundle.train.targets).float().mean())
    chosen = next(row for row in found.path if row["weight_decay"] == found.weight_decay)
    row = {"epoch": 1, "lr": 0.0, "loss": train_loss, "train_accuracy": train_accuracy, "val_loss": chosen["val_loss"],
           "val_accuracy": chosen["val_accuracy"], "time_s": time.perf_counter() - start}  # the decay: in head_fit
    if (on_epoch := fit_args.get("on_epoch")) is not None:
        on_epoch(row)
    summary = {"method": "lbfgs_logistic_regression", "weight_decay": found.weight_decay, "converged": found.converged,
               "grad_norm": found.grad_norm, "at_grid_edge": found.at_grid_edge, "path": found.path}
    return FitResult([row], 1, chosen["val_accuracy"], head_fit=summary)
