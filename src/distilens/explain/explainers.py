"""The one registry of attribution methods; each entry declares the kinds of input it explains.

An :class:`Explainer` is a name with one implementation per input kind — ``"image"``
((B, C, H, W) floats), ``"table"`` ((B, F) floats), ``"text"`` ((B, L) int64 token ids of a
:class:`~distilens.models.capabilities.TokenModel`) — and what each implementation requires
of a model (gradients, a spatial layer, attention maps). A module that defines a method
registers it with :func:`register_explainer`; another module may add the same name for
other kinds (Integrated Gradients on pixels and on token embeddings are one method), but a
kind registered twice under one name is a bug and raises.

Implementations are called as ``fn(model, x, target, **options)`` for images and tables,
and ``fn(model, ids, target, keep, **options)`` for text (``keep``: (B, L) bool, tokens
never perturbed), always through :func:`~distilens.explain.attribute.attribute`.

Example:
    >>> EXPLAINERS.get("integrated_gradients").kinds
    ('image', 'table', 'text')
    >>> explainers_for("text")
    ['attention_rollout', 'input_x_gradient', 'integrated_gradients', 'occlusion']
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, TypeVar

from torch import Tensor, nn

from ..errors import DistilensError
from ..models.capabilities import AttentionModel, PiecewiseConstantModel, unwrap
from ..models.tap import last_spatial_layer
from ..registry import Registry
from .hygiene import model_device

__all__ = [
    "Kind",
    "KINDS",
    "Requirement",
    "Implementation",
    "Explainer",
    "EXPLAINERS",
    "register_explainer",
    "get_explainer",
    "explainers_for",
    "input_kind",
    "needs_gradients",
    "needs_spatial_layer",
    "needs_attention_maps",
]

#: The kinds of input an explainer may declare.
Kind = Literal["image", "table", "text"]
KINDS: tuple[Kind, ...] = ("image", "table", "text")

#: ``check(model, example) -> reason or None``: why ``model`` cannot be explained on inputs
#: like ``example`` (one row) by an implementation, or ``None`` when it can.
Requirement = Callable[[nn.Module, Tensor], "str | None"]

#: Input kind by (floating point?, number of dimensions).
_KIND_OF = {(True, 4): "image", (False, 4): "image", (True, 2): "table", (False, 2): "text"}

#: Names that changed when the image and text stacks became one, and what they are now.
_RENAMED = {"gradient_x_input": "input_x_gradient"}

Fn = TypeVar("Fn", bound=Callable[..., Tensor])


@dataclass(frozen=True)
class Implementation:
    """How one method explains one kind of input: the function and what it needs of a model."""

    fn: Callable[..., Tensor]
    requires: tuple[Requirement, ...] = ()

    def takes(self, option: str) -> bool:
        """Whether the function accepts the keyword ``option`` (e.g. ``seed``, ``replace_id``)."""
        return option in inspect.signature(self.fn).parameters


class Explainer:
    """One attribution method: its implementation per input kind, and whether maps of two models compare.

    Args:
        name: The registered name.
        comparable: ``False`` for methods whose maps live in a model's own units (the units
            of one layer for ``neuron_importance``), which teacher and student do not share.
    """

    def __init__(self, name: str, comparable: bool = True) -> None:
        self.name = name
        self.comparable = comparable
        self._impls: dict[Kind, Implementation] = {}

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The input kinds explained, in the order image, table, text."""
        return tuple(k for k in KINDS if k in self._impls)

    @property
    def summary(self) -> str:
        """First line of the docstring of the first kind's implementation."""
        doc = (self._impls[self.kinds[0]].fn.__doc__ or "").strip().splitlines() if self._impls else []
        return doc[0] if doc else ""

    def add(self, kinds: Sequence[Kind], impl: Implementation) -> None:
        """Make ``impl`` this method's implementation for ``kinds``; a kind given twice raises ValueError."""
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"explainer '{self.name}': unknown input kind '{kind}'; kinds are {', '.join(KINDS)}")
            if kind in self._impls:
                raise ValueError(f"explainer '{self.name}' is already registered for {kind} inputs")
            self._impls[kind] = impl

    def implementation(self, kind: Kind) -> Implementation:
        """The implementation for ``kind``; a kind this method does not explain is the user's error."""
        if kind not in self._impls:
            others = ", ".join(explainers_for(kind))
            raise DistilensError(
                f"explainer '{self.name}' needs {' or '.join(self.kinds)} inputs, not {kind} inputs; "
                f"for {kind} inputs use one of: {others}"
            )
        return self._impls[kind]

    def reason(self, model: nn.Module, example: Tensor) -> str | None:
        """Why this method cannot explain ``model`` on inputs like ``example`` (one row), or ``None``."""
        kind = input_kind(example)
        if kind not in self._impls:
            return f"needs {' or '.join(self.kinds)} inputs"
        for check in self._impls[kind].requires:
            why = check(model, example)
            if why is not None:
                return why
        return None


#: Attribution methods by name (``distilens list explainers``).
EXPLAINERS: Registry[Explainer] = Registry("explainer")


def register_explainer(
    name: str, *kinds: Kind, requires: Sequence[Requirement] = (), comparable: bool = True
) -> Callable[[Fn], Fn]:
    """Decorator: register the function as ``name``'s implementation for ``kinds``.

    The first registration of ``name`` creates the entry (``comparable`` is read then);
    later ones add kinds to it.

    Example:
        >>> @register_explainer("saliency", "image", "table", requires=[needs_gradients])
        ... def _saliency(model, x, target): ...
    """

    def add(fn: Fn) -> Fn:
        if name not in EXPLAINERS:
            EXPLAINERS.register(name)(Explainer(name, comparable))
        EXPLAINERS.get(name).add(kinds, Implementation(fn, tuple(requires)))
        return fn

    return add


def get_explainer(name: str) -> Explainer:
    """The entry for ``name``; unknown names fail with the closest valid ones (and renamed ones with the new name)."""
    if name in _RENAMED:
        raise DistilensError(
            f"explainer '{name}' is now called '{_RENAMED[name]}' (one name for images, tables and text)"
        )
    return EXPLAINERS.get(name)


def explainers_for(kind: Kind) -> list[str]:
    """Names of the methods that explain ``kind`` inputs, sorted."""
    return [n for n in EXPLAINERS.names() if kind in EXPLAINERS.get(n).kinds]


def input_kind(inputs: Tensor) -> Kind:
    """``"image"`` for (B, C, H, W), ``"table"`` for (B, F) floats, ``"text"`` for (B, L) integer token ids."""
    kind = _KIND_OF.get((inputs.is_floating_point(), inputs.dim()))
    if kind is None:
        raise DistilensError(
            "explain: inputs must be (B, C, H, W) images, (B, F) float rows or (B, L) int64 token ids, "
            f"got shape {tuple(inputs.shape)} {inputs.dtype}"
        )
    return kind  # type: ignore[return-value]


def needs_gradients(model: nn.Module, example: Tensor) -> str | None:
    """Gradient methods say nothing about a model whose eval output is piecewise constant (a soft tree's max path)."""
    m = unwrap(model)
    if isinstance(m, PiecewiseConstantModel) and m.piecewise_constant_in_eval:
        return "needs gradients, and a soft tree's max-path output is piecewise constant; use occlusion or kernel_shap"
    return None


def needs_spatial_layer(model: nn.Module, example: Tensor) -> str | None:
    """Grad-CAM and activation attention read a (B, C, H, W) layer; MLPs and TorchScript models have none to tap."""
    try:
        last_spatial_layer(model, example[:1].to(model_device(model)))
    except DistilensError as exc:
        return f"cannot run here ({exc})"
    return None


def needs_attention_maps(model: nn.Module, example: Tensor) -> str | None:
    """Attention rollout reads self-attention maps (:class:`~distilens.models.capabilities.AttentionModel`)."""
    if not isinstance(unwrap(model), AttentionModel):
        return f"needs self-attention maps, which {type(model).__name__} does not give (not a transformer)"
    return None
