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

from ..data.bundle import DataBundle, InputSpec, Split
from ..evaluate import predict_logits
from ..runtime import resolve_device
from .trainer import FitResult, fit

__all__ = ["fit_teacher", "encode_split", "teacher_bundle"]


def teacher_bundle(bundle: DataBundle) -> DataBundle:
    """``bundle`` as the teacher reads it: its own token ids and spec where its tokenizer differs, else ``bundle``."""
    return bundle.for_teacher()


class _Features(nn.Module):
    """``model.forward_features`` as a module's forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor) -> Tensor:
        return self.model.forward_features(ids)


def encode_split(model: nn.Module, split: Split, batch_size: int = 256) -> Tensor:
    """(N, D) float32 ``model.forward_features`` of every row of ``split``, in eval mode (mode restored), on the CPU.

    Token ids of a model with a ``pad_id`` are encoded in batches of similar length, each
    cut to its longest row: trailing pads do not change a text model's output, and short
    snippets padded to L would cost up to L/length times more.
    """
    pad_id = getattr(model, "pad_id", None)
    if split.inputs.is_floating_point() or pad_id is None:
        return predict_logits(_Features(model), split, batch_size)
    lengths = (split.inputs != pad_id).sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    chunks = []
    for start in range(0, len(split), batch_size):
        idx = order[start : start + batch_size]
        width = max(int(lengths[idx].max()), 1)
        chunks.append(predict_logits(_Features(model), Split(split.inputs[idx, :width], split.targets[idx]), batch_size))
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
        model: The teacher; a model with ``frozen_encoder`` True must have ``forward_features``
            and a ``head`` (and may have a ``dropout`` applied before it).
        bundle: The data.
        encode_batch_size: Rows per encoder forward when computing the features.
        features: ``{"train": (N, D), "val": (M, D)}`` features computed earlier by
            :func:`encode_split` (e.g. kept on disk across runs); computed here when ``None``.
        **fit_args: Passed to :func:`fit` (epochs, lr, seed, device, checkpoint_path …).

    Example:
        >>> teacher = build_model("minilm", bundle.spec, finetune="head")
        >>> fit_teacher(teacher, bundle, epochs=30, lr=3e-3)
    """
    if not getattr(model, "frozen_encoder", False):
        return fit(model, bundle, **fit_args)
    device = fit_args.get("device", "auto")
    model.to(resolve_device(device) if isinstance(device, str) else device)
    if features is None:
        features = {name: encode_split(model, getattr(bundle, name), encode_batch_size) for name in ("train", "val")}
    spec = InputSpec(kind="table", shape=(int(features["train"].shape[1]),), class_names=bundle.spec.class_names)
    val = Split(features["val"], bundle.val.targets)
    head_bundle = DataBundle(f"{bundle.name}-features", Split(features["train"], bundle.train.targets), val, val, spec)
    head = nn.Sequential(getattr(model, "dropout", nn.Identity()), model.head)  # shares the teacher's head
    result = fit(head, head_bundle, **fit_args)
    model.eval()
    return result
