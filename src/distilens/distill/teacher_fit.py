"""Teacher training that skips a frozen encoder: its features are computed once, the head is fitted on them.

A teacher whose ``frozen_encoder`` is True (the MiniLM teacher with ``finetune: head``)
maps ids to features by a fixed function, so training the head on the features gives the
same updates as training the whole model with the encoder's gradients switched off, at
the cost of one encoder pass over the train and val sets instead of one per epoch
(:func:`encode_split`). Everything else trains with :func:`fit`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..data.bundle import DataBundle, InputSpec, Split, iterate_batches
from ..models.capabilities import FeatureModel, FrozenEncoderModel, TokenModel
from ..models.modes import eval_mode
from ..runtime import resolve_device
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
            has one) fitted on the encoder's features.
        bundle: The data.
        encode_batch_size: Rows per encoder forward when computing the features.
        features: ``{"train": (N, D), "val": (M, D)}`` features computed earlier by
            :func:`encode_split` (e.g. kept on disk across runs); computed here when ``None``.
        **fit_args: Passed to :func:`fit` (epochs, lr, seed, device, checkpoint_path …).

    Example:
        >>> teacher = build_model("minilm", bundle.spec, finetune="head")
        >>> fit_teacher(teacher, bundle, epochs=30, lr=3e-3)
    """
    if not (isinstance(model, FrozenEncoderModel) and model.frozen_encoder):
        return fit(model, bundle, **fit_args)
    return _fit_head(model, bundle, features, encode_batch_size, fit_args)


def _fit_head(
    model: nn.Module, bundle: DataBundle, features: dict[str, Tensor] | None, encode_batch_size: int,
    fit_args: dict[str, Any],
) -> FitResult:
    """Fit the teacher's head (it is shared, so the teacher is trained in place) on its encoder's features."""
    device = fit_args.get("device", "auto")
    model.to(resolve_device(device) if isinstance(device, str) else device)
    if features is None:
        features = {"train": encode_split(model, bundle.train, encode_batch_size),
                    "val": encode_split(model, bundle.val, encode_batch_size)}
    spec = InputSpec(kind="table", shape=(int(features["train"].shape[1]),), class_names=bundle.spec.class_names)
    val = Split(features["val"], bundle.val.targets)
    head_bundle = DataBundle(f"{bundle.name}-features", Split(features["train"], bundle.train.targets), val, val, spec)
    head = nn.Sequential(getattr(model, "dropout", nn.Identity()), model.head)  # the dropout the forward applies, if any
    result = fit(head, head_bundle, **fit_args)
    model.eval()  # the state fit leaves a model in
    return result
