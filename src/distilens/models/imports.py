"""Architectures given as an import path: ``import:package.module:factory``.

Building one imports that module (its code runs, as any ``import`` does) and calls
``factory(**args)`` (plus ``spec=`` when the factory takes ``spec``). A run's config may
name one; a run folder's model file may too, but commands build it only with
``--allow-import`` (:func:`~distilens.models.io.load_run_model`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable, Mapping

from torch import nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from .zoo import build_model

__all__ = ["IMPORT_PREFIX", "build_architecture"]

#: The prefix of an architecture given as an import path.
IMPORT_PREFIX = "import:"
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _import_factory(arch: str) -> Callable[..., Any]:
    target = arch[len(IMPORT_PREFIX):]
    module_name, _, attr = target.rpartition(":")
    if not module_name or not _DOTTED.match(module_name) or not _DOTTED.match(attr):
        raise ModelError(f"teacher.arch '{arch}': write an import path as import:package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModelError(f"teacher.arch '{arch}': cannot import '{module_name}' ({exc}); install it or add its folder to PYTHONPATH") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"teacher.arch '{arch}': module '{module_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"teacher.arch '{arch}': '{attr}' is not callable; name a function or class that builds the model")
    return obj


def build_architecture(arch: str, spec: InputSpec, args: Mapping[str, Any] | None = None) -> nn.Module:
    """Build an untrained module from a zoo name or an ``import:package.module:factory`` path.

    Args:
        arch: A registered name (``distilens list models``) or ``import:pkg.mod:factory``.
        spec: The data's :class:`InputSpec`; passed to factories that take ``spec``.
        args: Keyword arguments of the architecture or factory.

    Example:
        >>> model = build_architecture("import:torchvision.models:resnet18", spec, {"num_classes": 10})
    """
    args = dict(args or {})
    if not arch.startswith(IMPORT_PREFIX):
        return build_model(arch, spec, **args)
    factory = _import_factory(arch)
    try:
        takes_spec = "spec" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes_spec = False
    try:
        model = factory(spec=spec, **args) if takes_spec else factory(**args)
    except TypeError as exc:
        raise ModelError(f"teacher.arch '{arch}' cannot be called with teacher.args {args}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"teacher.arch '{arch}' returned a {type(model).__name__}, not a torch.nn.Module")
    return model
