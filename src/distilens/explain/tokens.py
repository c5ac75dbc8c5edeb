"""Explainers of token ids, for text models: Integrated Gradients and input × gradient on the
token embeddings, occlusion of tokens, attention rollout.

Importing this module registers them in :data:`~.explainers.EXPLAINERS` for ``"text"``
inputs. A text model is a :class:`~distilens.models.capabilities.TokenModel`: it reads
right-padded ids (B, L), masks ``ids == pad_id`` itself, and gives its embedding table.
Each function receives ``keep`` (B, L) bool — pads and special tokens — which it never
perturbs; :func:`~.attribute.attribute` zeroes the pad positions of the result.
"""

from __future__ import annotations

# Captum is imported inside the functions that use it: importing the explain package (as
# `distilens list` and every command's start do) does not pay for it.

from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import DistilensError
from ..models.capabilities import AttentionModel, PoolingModel, TokenModel, unwrap
from .explainers import needs_attention_maps, needs_gradients, register_explainer

__all__: list[str] = []


def _token_model(model: nn.Module) -> TokenModel:
    return unwrap(model)  # type: ignore[return-value]  # attribute() checked the capability


#: Integrated Gradients on token ids with ``n_steps="auto"``: every text starts with this many
#: Gauss–Legendre steps, and is recomputed with twice as many while its completeness error
#: exceeds the tolerance, up to :data:`IG_MAX_STEPS`.
IG_START_STEPS = 8
IG_MAX_STEPS = 64
#: The completeness error allowed: ``|Σ attributions − (f(x) − f(x′))| <= tolerance · max(|f(x) − f(x′)|, 0.1)``.
IG_TOLERANCE = 0.01


@register_explainer("integrated_gradients", "text", requires=[needs_gradients])
def _integrated_gradients(
    model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor, n_steps: int | Literal["auto"] = "auto",
    tolerance: float = IG_TOLERANCE, max_steps: int = IG_MAX_STEPS, internal_batch_size: int | None = 256,
) -> Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) on the token embeddings.

    Captum's ``LayerIntegratedGradients`` on ``get_input_embeddings()``; the baseline puts the
    pad token's embedding at every position not kept (``keep``: pads, specials), while the
    padding mask stays the input's, so pads and kept tokens score exactly 0. The embedding-dim
    axis is summed, so Σ_tokens = f(x) − f(x′) (completeness, Gauss–Legendre, ``n_steps``).

    With ``n_steps="auto"`` (the default) each text gets the fewest steps, doubling from
    :data:`IG_START_STEPS` up to ``max_steps``, whose completeness error is at most
    ``tolerance · max(|f(x) − f(x′)|, 0.1)``: on short snippets and small models 8 steps
    already meet 1%, where a fixed 32 cost four times as much. An int fixes the steps.
    """
    text_model = _token_model(model)
    baseline = torch.where(keep, ids, torch.full_like(ids, text_model.pad_id))
    layer = text_model.get_input_embeddings()
    from captum.attr import LayerIntegratedGradients
    lig = LayerIntegratedGradients(model, layer)

    def run(rows: Tensor | slice, steps: int) -> Tensor:
        t = target[rows] if isinstance(target, Tensor) and target.dim() > 0 else target
        attr = lig.attribute(ids[rows], baselines=baseline[rows], target=t, n_steps=steps,
                             internal_batch_size=internal_batch_size)
        return attr.sum(-1).detach()  # (B, L, D) -> (B, L)

    if n_steps != "auto":
        return run(slice(None), int(n_steps))
    gap = ig_path_gap(model, layer, ids, baseline, target)
    allowed = tolerance * gap.abs().clamp_min(0.1)
    steps = IG_START_STEPS
    scores = run(slice(None), steps)
    todo = torch.nonzero((scores.sum(1) - gap).abs() > allowed).flatten()
    while todo.numel() and steps < max_steps:
        steps = min(2 * steps, max_steps)
        scores[todo] = run(todo, steps)
        todo = todo[(scores[todo].sum(1) - gap[todo]).abs() > allowed[todo]]
    return scores


@torch.no_grad()
def ig_path_gap(model: nn.Module, layer: nn.Module, ids: Tensor, baseline: Tensor, target: Tensor | int) -> Tensor:
    """(B,) f(x) − f(x′) at the two ends of the Integrated Gradients path.

    The path runs the model on ``ids`` (so with the input's padding mask) with the embedding
    layer's output moved from the baseline's to the input's; its start f(x′) is that forward
    with the layer's output replaced by the baseline's (not the model run on the baseline
    ids, which would mask every replaced token as padding).
    """
    base_out = layer(baseline)
    index = torch.as_tensor(target, device=ids.device).expand(ids.shape[0]).view(-1, 1)
    fx = model(ids).gather(1, index).squeeze(1)
    handle = layer.register_forward_hook(lambda module, args, out: base_out)
    try:
        f_base = model(ids).gather(1, index).squeeze(1)
    finally:
        handle.remove()
    return (fx - f_base).float()


@register_explainer("input_x_gradient", "text", requires=[needs_gradients])
def _input_x_gradient(model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor) -> Tensor:
    """Input × gradient on the token embeddings (Shrikumar et al. 2016; Denil et al. 2014): e_i · ∂f/∂e_i."""
    from captum.attr import LayerGradientXActivation
    attr = LayerGradientXActivation(model, _token_model(model).get_input_embeddings()).attribute(ids, target=target)
    return attr.sum(-1)  # (B, L, D) -> (B, L)


@register_explainer("occlusion", "text")
@torch.no_grad()
def _occlusion(
    model: nn.Module,
    ids: Tensor,
    target: Tensor | int,
    keep: Tensor,
    replace_id: int | None = None,
    score: Literal["logit", "probability"] = "logit",
    batch_size: int = 256,
) -> Tensor:
    """Token occlusion (Zeiler & Fergus 2014; Li et al. 2016): s(x) − s(x with token i replaced).

    Each token not kept is replaced, one at a time, by ``replace_id`` (the caller passes the
    tokenizer's mask or unk id; default ``model.pad_id``, i.e. the token is dropped, since the
    padding mask is derived from the ids). ``score`` is the target ``logit`` (default: it
    does not saturate) or its softmax ``probability``. All variants run in batches of
    ``batch_size`` rows.
    """
    if score not in ("logit", "probability"):
        raise DistilensError(f"occlusion: score must be 'logit' or 'probability', got '{score}'")
    rid = _token_model(model).pad_id if replace_id is None else int(replace_id)
    b, _ = ids.shape
    tgt = target if isinstance(target, Tensor) else torch.full((b,), target, dtype=torch.long, device=ids.device)

    def scores(x: Tensor, t: Tensor) -> Tensor:
        out = torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
        out = out.softmax(1) if score == "probability" else out
        return out.gather(1, t.view(-1, 1)).squeeze(1).double()

    rows, cols = (~keep).nonzero(as_tuple=True)  # one variant per occluded token
    full = scores(ids, tgt)  # (B,)
    attr = torch.zeros(ids.shape, dtype=torch.float64, device=ids.device)
    if rows.numel():
        variants = ids[rows].clone()  # (V, L)
        variants[torch.arange(rows.numel(), device=ids.device), cols] = rid
        attr[rows, cols] = full[rows] - scores(variants, tgt[rows])
    return attr.float()


@register_explainer("attention_rollout", "text", requires=[needs_attention_maps])
@torch.no_grad()
def _attention_rollout(
    model: nn.Module, ids: Tensor, target: Tensor | int, keep: Tensor, query: Literal["auto", "first", "mean"] = "auto"
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each token flows into the pooled output.

    Per layer, heads averaged, Â = 0.5·A + 0.5·I with rows renormalised (the residual
    connection); R = Â_L ⋯ Â_1. The score of token j is R[q, j] for the pooled query: the
    first token (``query="first"``, [CLS]-pooled models) or the mean over non-pad query rows
    (``"mean"``, mean-pooled models); ``"auto"`` asks the model's declared pooling
    (:class:`~distilens.models.capabilities.PoolingModel`: "first" or "cls" → first; "mean",
    or none declared → mean). Independent of the target class.
    """
    inner = unwrap(model)
    if query == "auto":
        first = isinstance(inner, PoolingModel) and inner.pooling in ("first", "cls")
        query = "first" if first else "mean"
    if query not in ("first", "mean"):
        raise DistilensError(f"attention_rollout: query must be 'auto', 'first' or 'mean', got '{query}'")
    if not isinstance(inner, AttentionModel):
        raise DistilensError(f"attention_rollout {needs_attention_maps(model, ids)}")
    maps = inner.attention_maps(ids)
    if not maps:
        raise DistilensError(f"{type(model).__name__}.attention_maps returned no layers")
    eye = torch.eye(ids.shape[1], dtype=torch.float64, device=ids.device)
    rollout = eye.expand(ids.shape[0], -1, -1)
    for a in maps:
        step = 0.5 * a.double().mean(1) + 0.5 * eye  # (B, H, L, L) -> (B, L, L)
        step = step / step.sum(-1, keepdim=True)
        rollout = step @ rollout
    real = (ids != _token_model(model).pad_id).double()  # (B, L)
    if query == "first":
        out = rollout[:, 0, :]
    else:
        out = (rollout * real[:, :, None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
    return (out * real).float()
