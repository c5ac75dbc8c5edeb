"""Faithfulness of an explanation: deletion and insertion curves (Petsiuk et al. 2018, RISE).

Deletion removes the most relevant features first (replacing them by a baseline) and
tracks the model's probability for the target class; a faithful map makes it fall fast
(low AUC). Insertion starts from the baseline and puts the most relevant features back;
a faithful map makes it rise fast (high AUC). Features are pixels, table columns, or the
tokens of a text (removed by dropping them, or by replacing them with an [UNK]-like token).
Each sample costs ``steps + 1`` forward passes, all batched, whatever the number of
features (per-pixel flipping would cost one per feature; see ``benchmarks/explain_speed.py``).
Token ids are run in batches of similar length, each cut to its longest row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.bundle import map_by_length
from ..errors import DistilensError
from ..models.capabilities import unwrap
from .explainers import Kind, input_kind
from .hygiene import eval_mode, model_device

__all__ = ["deletion_insertion", "removal_baseline", "gaussian_blur"]

FaithBaseline = float | Tensor | Literal["mean", "blur"]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """(B, C, H, W) blurred by a separable Gaussian of std ``sigma`` pixels (reflected borders)."""
    radius = max(1, min(int(math.ceil(2 * sigma)), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, k) depthwise
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), g, groups=x.shape[1])
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), g.transpose(-1, -2), groups=x.shape[1])


def removal_baseline(x: Tensor, baseline: FaithBaseline) -> Tensor:
    """What a removed feature becomes, shaped like ``x``.

    Args:
        x: (B, C, H, W) images or (B, F) rows.
        baseline: a float (0 = the training mean, since inputs are normalised); ``"mean"``
            (each image's per-channel mean; for tables the batch's per-feature mean);
            ``"blur"`` (images: a Gaussian blur with σ = side/8, Petsiuk et al.'s insertion
            reference); or a tensor of one input's shape or the batch's.
    """
    if isinstance(baseline, Tensor):
        b = baseline.to(x.device, x.dtype)
        if b.shape == x.shape[1:]:
            b = b.unsqueeze(0)
        if b.shape[1:] != x.shape[1:]:
            raise DistilensError(f"faithfulness baseline of shape {tuple(b.shape)} does not fit inputs {tuple(x.shape)}")
        return b.expand_as(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        dims = (2, 3) if x.dim() == 4 else (0,)
        return x.mean(dim=dims, keepdim=True).expand_as(x)
    if baseline == "blur":
        if x.dim() != 4:
            raise DistilensError("faithfulness baseline 'blur' needs images; use a float or 'mean' for tables")
        return gaussian_blur(x, max(1.0, min(x.shape[-2:]) / 8))
    raise DistilensError(f"faithfulness baseline must be a float, 'mean', 'blur' or a tensor, got {baseline!r}")


def _relevance(maps: Tensor, inputs: Tensor) -> Tensor:
    """(B, D) relevance per location: channels summed for images, upsampled if coarser."""
    if inputs.dim() == 4 and maps.dim() == 4:
        maps = maps.sum(1, keepdim=True)
        if maps.shape[-2:] != inputs.shape[-2:]:
            maps = nn.functional.interpolate(maps.float(), size=inputs.shape[-2:], mode="bilinear")
    return maps.reshape(maps.shape[0], -1)


@dataclass
class _Removal:
    """How features of one batch are removed: what is ranked, what may move, and what it becomes.

    ``x``: the model's input; ``relevance``: (B, D) scores of the D locations; ``movable``:
    (B, D) bool, the locations that may be removed; ``removed``: ``x`` with everything
    removed; ``grid``: how a (B, S, D) choice of locations broadcasts against ``x``;
    ``pad``: the pad id of token ids (trailing pads are cut before the forward pass).
    """

    x: Tensor
    relevance: Tensor
    movable: Tensor
    removed: Tensor
    grid: Callable[[Tensor], Tensor]
    batch_size: int
    pad: int | None = None


def _dense_removal(model: nn.Module, inputs: Tensor, maps: Tensor, baseline: Any, keep: Tensor | None) -> _Removal:
    if keep is not None:
        raise DistilensError("faithfulness: keep masks are for token ids; images and rows have none")
    x = inputs.float()
    rel = _relevance(maps.float(), x)
    b, d = rel.shape
    # (B, S, D) → (B, S, 1, H, W) for images, broadcast over channels; rows stay (B, S, F).
    grid = (lambda c: c.view(b, c.shape[1], 1, *x.shape[-2:])) if x.dim() == 4 else (lambda c: c)
    base = removal_baseline(x, 0.0 if baseline is None else baseline)
    return _Removal(x, rel, torch.ones(b, d, dtype=torch.bool, device=x.device), base, grid, 2048)


def _token_removal(model: nn.Module, ids: Tensor, maps: Tensor, baseline: Any, keep: Tensor | None) -> _Removal:
    pad = unwrap(model).pad_id  # type: ignore[union-attr]  # a TokenModel: attribute() explained it
    if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, int)):
        raise DistilensError(f"faithfulness on token ids: the baseline is a token id (or None: the pad id), got {baseline!r}")
    movable = ids != pad
    if keep is not None:
        movable &= ~keep.to(ids.device).bool()
    removed = torch.where(movable, torch.full_like(ids, pad if baseline is None else int(baseline)), ids)
    return _Removal(ids, maps.float(), movable, removed, lambda c: c, 256, pad)


_REMOVALS: dict[Kind, Callable[..., _Removal]] = {"image": _dense_removal, "table": _dense_removal, "text": _token_removal}


@torch.no_grad()
def deletion_insertion(
    model: nn.Module,
    inputs: Tensor,
    maps: Tensor,
    target: Tensor,
    *,
    steps: int = 16,
    baseline: FaithBaseline | int | None = None,
    keep: Tensor | None = None,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """Deletion and insertion curves and their areas, for pixels, columns or tokens.

    Each sample's removable locations are ranked by relevance (most relevant first); at step
    k of ``steps`` the first round(k / steps · n) of its n locations are removed (deletion)
    or are the only ones present (insertion). For token ids the locations are the tokens
    that are neither padding nor kept (specials); a removed token is replaced by
    ``baseline`` (default the pad id: the token is dropped, as the model masks pads), and
    insertion starts from the text with all of them removed.

    Args:
        model: Classifier returning (B, C) logits (evaluated in eval mode).
        inputs: (B, C, H, W) images, (B, F) rows or (B, L) int64 token ids.
        maps: Attributions for ``inputs`` (shaped like them, (B, 1, h, w) CAMs, or (B, L)).
        target: (B,) class whose probability is tracked.
        steps: Number of equal steps from 0 to all removable locations.
        baseline: What stands for "removed": for images and rows a float (default 0, the
            training mean), ``"mean"``, ``"blur"`` or a tensor (see :func:`removal_baseline`);
            for token ids a token id ([UNK], [MASK]; default the pad id).
        keep: (B, L) bool tokens never removed (special tokens); token ids only.
        batch_size: Perturbed inputs per forward pass (default 2048, or 256 texts).

    Returns:
        ``deletion`` and ``insertion``: (B, steps + 1) probabilities; ``deletion_auc`` and
        ``insertion_auc``: (B,) trapezoidal areas over the fraction removed, in [0, 1].

    Example:
        >>> curves = deletion_insertion(model, x, attribute(model, x, t), t, steps=16)
        >>> curves["deletion_auc"].mean() < curves["insertion_auc"].mean()
    """
    device = model_device(model)
    r = _REMOVALS[input_kind(inputs)](model, inputs.to(device), maps.to(device), baseline, keep)
    b = r.relevance.shape[0]
    relevance = r.relevance.masked_fill(~r.movable, float("-inf"))  # never chosen: ranked last
    # rank[i, j] = position of location j in sample i's descending relevance order.
    rank = relevance.argsort(dim=1, descending=True).argsort(dim=1)
    n = r.movable.sum(1).tolist()
    counts = torch.stack([torch.linspace(0, m, steps + 1, device=device) for m in n]).round().long()  # (B, S+1)
    chosen = r.grid(rank.unsqueeze(1) < counts.unsqueeze(2))  # (B, S+1, D): locations moved at step k
    xs, base = r.x.unsqueeze(1), r.removed.unsqueeze(1)  # (B, 1, ...)
    deleted = torch.where(chosen, base, xs)
    inserted = torch.where(chosen, xs, base)
    tgt = target.to(device).view(b, 1).expand(b, steps + 1).reshape(-1)
    out = {}
    with eval_mode(model):
        for name, batch in (("deletion", deleted), ("insertion", inserted)):
            flat = batch.reshape(b * (steps + 1), *r.x.shape[1:])
            probs = _probabilities(model, flat, batch_size or r.batch_size, r.pad)
            curve = probs.gather(1, tgt.view(-1, 1)).view(b, steps + 1)
            out[name] = curve.cpu()
            out[f"{name}_auc"] = torch.trapezoid(curve, dx=1.0 / steps, dim=1).cpu()
    return out


def _probabilities(model: nn.Module, flat: Tensor, batch_size: int, pad: int | None) -> Tensor:
    """(N, C) softmax of ``model`` on ``flat``; token ids in batches of similar length cut to their longest row."""
    if pad is None:
        return torch.cat([model(chunk).float().softmax(1) for chunk in flat.split(batch_size)])
    return map_by_length(lambda x: model(x).float().softmax(1), flat, pad, batch_size)
