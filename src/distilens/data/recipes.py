"""Per-dataset default recipes: the run settings a built-in set declares, applied where the config is silent.

A built-in data set may register a partial run config in :data:`~distilens.data.builtin.RECIPES`
(its teacher and student architectures, epochs, batch sizes …). :func:`with_dataset_defaults`
fills in those settings that the user's config leaves unset, as the text defaults do for
text data: anything given in the config file or with ``--set`` is kept. An architecture and
its ``args`` go together: naming either keeps both of the recipe's out.

Example:
    >>> cfg = with_dataset_defaults(load_config(None, ["data.source=builtin:fashion_mnist"]))
    >>> cfg.teacher.arch, cfg.teacher.args, cfg.distill.epochs
    ('cnn', {'width': 16}, 3)
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel

from ..config import RunConfig
from .builtin import RECIPES

__all__ = ["with_dataset_defaults", "dataset_recipe"]

_TOGETHER = ("arch", "args")  # a model's architecture and its arguments are one choice


def dataset_recipe(source: str) -> dict[str, Any] | None:
    """The recipe ``data.source`` declares (``builtin:NAME`` or a bare built-in name), or ``None``."""
    scheme, _, name = source.partition(":")
    if not name:
        scheme, name = "builtin", scheme
    return RECIPES.get(name) if scheme == "builtin" and name in RECIPES else None


def with_dataset_defaults(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its built-in data set's recipe where the config leaves the settings unset.

    A loaded teacher (``teacher.weights``) keeps its own architecture. Configs of data sets
    without a recipe are returned unchanged (the same object).

    Args:
        cfg: The validated run config.

    Returns:
        A copy with the recipe's values in the unset fields (which then count as set).
    """
    recipe = dataset_recipe(cfg.data.source)
    if recipe is None:
        return cfg
    out = cfg.model_copy(deep=True)
    for section, values in recipe.items():
        if section == "teacher" and cfg.teacher.weights:
            values = {k: v for k, v in values.items() if k not in _TOGETHER}
        _fill(getattr(out, section), values)
    return out  # each assignment was validated (validate_assignment), model checks included


def _fill(model: BaseModel, values: Mapping[str, Any]) -> None:
    """Set each of ``values`` on ``model`` where unset (recursing into sub-models), in place."""
    given = model.model_fields_set
    together = [k for k in _TOGETHER if k in values]
    skip = set(together) if together and any(k in given for k in _TOGETHER) else set()
    for key, value in values.items():
        current = getattr(model, key)
        if isinstance(current, BaseModel) and isinstance(value, Mapping):
            _fill(current, value)
        elif key not in given and key not in skip:
            setattr(model, key, value)
