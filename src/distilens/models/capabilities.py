"""What a model can do beyond ``forward``, declared as Protocols instead of probed with ``getattr``.

A stage that needs a capability asks ``isinstance(model, TokenModel)`` (the Protocols are
runtime-checkable: an object has the capability when it has the named members). A new model
gains a capability by defining the members; nothing is registered.

Example:
    >>> from distilens.models import build_model
    >>> isinstance(build_model("embedding_bag", spec), TokenModel)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "TokenModel",
    "AttentionModel",
    "AttentionLayerModel",
    "FeatureModel",
    "FrozenEncoderModel",
    "RegularisedModel",
    "PiecewiseConstantModel",
    "PoolingModel",
    "LeafModel",
    "unwrap",
    "has_attention_maps",
]


@runtime_checkable
class TokenModel(Protocol):
    """Reads right-padded token ids (B, L) int64; padding is ``pad_id`` and is masked by the model."""

    pad_id: int

    def get_input_embeddings(self) -> nn.Embedding:
        """The (V, D) token embedding table (explainers attribute on its output)."""
        ...


@runtime_checkable
class AttentionModel(Protocol):
    """A transformer whose self-attention probabilities can be read."""

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        """Per layer, (B, heads, L, L) attention probabilities (rows of padding queries are 0)."""
        ...


@runtime_checkable
class AttentionLayerModel(Protocol):
    """A transformer whose forward computes its last layer's self-attention in one named submodule.

    That submodule's forward returns ``(output, probabilities)`` with probabilities
    (B, heads, L, L), so a forward hook reads the attention of the training forward itself
    instead of a second pass through :meth:`AttentionModel.attention_maps`.
    """

    attention_layer: str


@runtime_checkable
class FeatureModel(Protocol):
    """Gives the pooled representation its head reads (hints on pooled features)."""

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, D) pooled features of a batch."""
        ...


@runtime_checkable
class FrozenEncoderModel(Protocol):
    """A teacher whose encoder is frozen: only its head trains, on features computed once."""

    frozen_encoder: bool
    head: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, D) pooled features of a batch."""
        ...


@runtime_checkable
class RegularisedModel(Protocol):
    """Adds its own term to the training loss (the soft tree's balance penalty)."""

    def regularization(self) -> Tensor:
        """A scalar added to the loss of the step that just ran ``forward``."""
        ...


@runtime_checkable
class PiecewiseConstantModel(Protocol):
    """Whose eval-mode output is piecewise constant in its inputs (gradients are zero almost everywhere)."""

    piecewise_constant_in_eval: bool


@runtime_checkable
class PoolingModel(Protocol):
    """Declares how its token states become the one vector its head reads."""

    pooling: str
    """``"mean"`` over the real tokens, or ``"first"`` / ``"cls"``: the first token's state."""


@runtime_checkable
class LeafModel(Protocol):
    """A soft decision tree: its train-mode output mixes per-leaf class distributions by path probability."""

    def log_path_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """((B, leaves) log probability of reaching each leaf, (B, inner nodes) of each inner node).

        The train-mode ``forward`` calls it exactly once, so a tap that wraps it reads the
        paths of the training forward.
        """
        ...

    def leaf_log_probs(self) -> Tensor:
        """(leaves, C) log class distribution of each leaf."""
        ...


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or similar ``.module``) wrapper, else ``model``."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def has_attention_maps(*models: nn.Module) -> bool:
    """Whether every model is an :class:`AttentionModel`."""
    return all(isinstance(unwrap(m), AttentionModel) for m in models)
