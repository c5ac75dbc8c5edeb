"""One verb, :func:`attribute`, for every registered method and every kind of input.

The methods live elsewhere and register in :data:`~.explainers.EXPLAINERS`: gradient methods
(saliency, input × gradient, Integrated Gradients, SmoothGrad, DeepLIFT) in
:mod:`.gradients`, layer methods (Grad-CAM, activation attention, neuron importance) in
:mod:`.layers`, perturbation methods (occlusion, KernelSHAP, LIME) in :mod:`.perturbation`,
and their token-id versions for text models in :mod:`.tokens`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data.bundle import by_length
from ..errors import DistilensError
from ..models.capabilities import TokenModel, unwrap
from .explainers import Kind, get_explainer, input_kind
from .hygiene import eval_mode, model_device, no_hook_leak

__all__ = ["attribute", "predicted_class", "TOKEN_ROWS"]

#: Token ids are attributed this many rows at a time, rows of similar length together.
TOKEN_ROWS = 16


@torch.no_grad()
def predicted_class(model: nn.Module, inputs: Tensor) -> Tensor:
    """(B,) argmax class of ``model`` on ``inputs`` (eval mode, mode restored)."""
    with eval_mode(model):
        return model(inputs).argmax(1)


def attribute(
    model: nn.Module, inputs: Tensor, target: Tensor | int | None = None, method: str = "integrated_gradients", **options: Any
) -> Tensor:
    """Attribute ``model``'s score for ``target`` to the input features (pixels, columns or tokens).

    Args:
        model: A classifier returning (B, C) logits. Explained in eval mode; its mode is
            restored afterwards, and no hook is left on it (also when the call fails).
        inputs: (B, C, H, W) images or (B, F) rows on any device (moved to the model's); or,
            for a text model (:class:`~distilens.models.capabilities.TokenModel`), (B, L)
            int64 token ids right-padded with ``model.pad_id``.
        target: (B,) classes, one int for all, or ``None`` for the model's predicted class.
            To compare two models, pass the same target to both (:func:`~.compare.compare` does).
        method: A name from ``distilens list explainers`` that explains this kind of input.
        **options: The method's options (e.g. ``n_steps`` for integrated_gradients,
            ``layer`` for gradcam, ``seed`` for the sampling methods). Text also takes
            ``keep``: (B, L) bool, tokens never perturbed (special tokens such as
            [CLS]/[SEP]); they stay in the baselines and score 0, as pads always do.

    Returns:
        Attributions on ``inputs``' device: shaped like ``inputs`` for gradient and
        perturbation methods; (B, 1, H, W) upsampled to the input for ``gradcam`` and
        ``attention``; (B, units) for ``neuron_importance``; (B, L) float token scores for
        text, exactly 0 on pad positions. Token ids are attributed :data:`TOKEN_ROWS` rows
        at a time, sorted by length, each group cut to its longest row: the same scores as
        one call per text (a text model's output does not depend on trailing padding), at a
        fraction of the cost when lengths vary.

    Example:
        >>> maps = attribute(model, x, method="integrated_gradients", n_steps=64)
        >>> scores = attribute(text_model, enc.ids, method="occlusion")  # (B, L), pads 0
    """
    explainer = get_explainer(method)
    kind = input_kind(inputs)
    _CHECK_MODEL[kind](model, inputs, method)
    fn = explainer.implementation(kind).fn
    return _RUNNERS[kind](fn, method, model, inputs, target, options)


def _dense_model(model: nn.Module, inputs: Tensor, method: str) -> None:
    if isinstance(unwrap(model), TokenModel):
        raise DistilensError(
            f"explainer '{method}': {type(model).__name__} reads token ids; inputs must be a (B, L) int64 tensor, "
            f"got {tuple(inputs.shape)} {inputs.dtype}"
        )


def _is_text_model(model: nn.Module) -> bool:
    """A :class:`TokenModel` whose ``pad_id`` is an integer."""
    m = unwrap(model)
    return isinstance(m, TokenModel) and isinstance(m.pad_id, int)


def _token_model(model: nn.Module, inputs: Tensor, method: str) -> None:
    if not _is_text_model(model):
        raise DistilensError(
            f"explainer '{method}': (B, L) int64 token ids need a text model, and {type(model).__name__} is not one "
            "(no integer 'pad_id' and get_input_embeddings(); see distilens.models.capabilities.TokenModel); "
            "table rows are float tensors"
        )


def _call(fn: Callable[..., Tensor], method: str, *args: Any, **options: Any) -> Tensor:
    """``fn(*args, **options)``; an option the method does not take is the user's error."""
    try:
        return fn(*args, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise DistilensError(f"explainer '{method}': {exc}; see the method's docstring for its options") from None
        raise


def _attribute_dense(
    fn: Callable[..., Tensor], method: str, model: nn.Module, inputs: Tensor, target: Tensor | int | None, options: dict[str, Any]
) -> Tensor:
    """Images and table rows: one call on the whole batch, as floats with gradients."""
    device = model_device(model)
    x = inputs.detach().to(device).float().requires_grad_(True)
    with eval_mode(model), no_hook_leak(model):
        if target is None:
            target = predicted_class(model, x)
        if isinstance(target, Tensor):
            target = target.to(device)
        out = _call(fn, method, model, x, target, **options)
    return out.detach().to(inputs.device)


def _attribute_tokens(
    fn: Callable[..., Tensor], method: str, model: nn.Module, ids: Tensor, target: Tensor | int | None, options: dict[str, Any]
) -> Tensor:
    """Token ids: groups of :data:`TOKEN_ROWS` rows of similar length, each cut to its longest row."""
    keep = options.pop("keep", None)
    pad = unwrap(model).pad_id
    device = model_device(model)
    x = ids.detach().to(device)
    is_pad = x == pad
    keep = is_pad if keep is None else keep.to(device).bool() | is_pad
    if keep.shape != x.shape:
        raise DistilensError(f"keep mask of shape {tuple(keep.shape)} does not match ids of shape {tuple(x.shape)}")
    b = x.shape[0]
    if isinstance(target, Tensor):
        target = target.to(device).expand(b) if target.dim() == 0 else target.to(device)
    out = torch.zeros(x.shape, dtype=torch.float32, device=device)
    with eval_mode(model), no_hook_leak(model):
        for rows, xr in by_length(x, pad, TOKEN_ROWS):
            cut = xr.shape[1]
            if target is None:
                t: Tensor | int = predicted_class(model, xr)
            else:
                t = target[rows] if isinstance(target, Tensor) else int(target)
            out[rows, :cut] = _call(fn, method, model, xr, t, keep[rows, :cut], **options).detach().float()
    return out.masked_fill(is_pad, 0.0).to(ids.device)


_CHECK_MODEL: dict[Kind, Callable[[nn.Module, Tensor, str], None]] = {
    "image": _dense_model, "table": _dense_model, "text": _token_model,
}
_RUNNERS = {"image": _attribute_dense, "table": _attribute_dense, "text": _attribute_tokens}
