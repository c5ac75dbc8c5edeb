"""Teachers trained elsewhere: safetensors, state dicts, TorchScript and import-path factories.

What runs code and what does not:

* ``.safetensors`` holds tensors only; the architecture comes from a distilens ``.json``
  beside it, a zoo name (``arch: resnet``) or an import path (``arch: import:pkg.mod:fn``).
* ``.pt``/``.pth`` state dicts load with ``torch.load(weights_only=True)`` only, which
  refuses pickled objects (such as a whole module saved with ``torch.save(model)``)
  *without* running them; distilens then says how to convert the file.
* A TorchScript archive carries code that runs when it is called, so it loads only with
  ``trust_torchscript=True``.
* ``import:package.module:factory`` imports that module (its code runs, as any ``import``
  does) and calls ``factory(**args)`` (plus ``spec=`` when the factory takes ``spec``);
  the weights file then holds the state dict.

Every teacher is checked against the data before any training: one forward pass on example
inputs of the data's spec (zeros of its shape; token ids for text) must return (B, num_classes) logits.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..data.bundle import InputSpec
from ..errors import DistilensError, ModelError
from ..limits import read_json
from ..modalities.base import example_inputs
from .hf import HF_PREFIX, load_hf_teacher
from .imports import IMPORT_PREFIX, build_architecture
from .io import UNREADABLE_SAFETENSORS, dtype_problem, load_model
from .zoo import build_model

__all__ = ["load_teacher", "check_teacher", "build_for_data", "build_architecture", "is_torchscript", "IMPORT_PREFIX"]

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def is_torchscript(path: str | Path) -> bool:
    """True for a TorchScript archive (a zip holding ``code/`` or ``constants.pkl``); reads names only."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def _load_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file or a plain ``torch.save(state_dict)`` file; never unpickles objects."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"cannot read weights '{path}': {exc}; {UNREADABLE_SAFETENSORS}") from None
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: noise beside the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Only the fact (which global), never torch's advice to load it anyway (errors.without_unsafe_advice).
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        why = f"it refers to {found.group(1)}" if found else ""
        raise ModelError(
            f"teacher.weights '{path}' holds pickled Python objects (e.g. a whole module saved with torch.save(model)); "
            f"distilens does not unpickle them because that can run code{f' ({why})' if why else ''}. "
            "Re-save the weights where the model is defined: torch.save(model.state_dict(), 'teacher.pt') "
            "or safetensors.torch.save_file(model.state_dict(), 'teacher.safetensors')"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelError(
            f"teacher.weights '{path}' is not a PyTorch weights file ({str(exc).splitlines()[0]}); it may be cut short: "
            "save the state dict again with torch.save(model.state_dict(), 'teacher.pt')"
        ) from None
    for key in _STATE_DICT_KEYS:  # common checkpoint wrappers: {"state_dict": {...}, "epoch": 3}
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ModelError(f"teacher.weights '{path}' holds a {type(obj).__name__}, not a state dict of tensors; save model.state_dict()")
    return dict(obj)


def _check_dtypes(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """Refuse weights the model cannot hold without losing meaning (complex for float, float for int)."""
    own = model.state_dict()
    for name, t in state.items():
        if name in own:
            problem = dtype_problem(name, t.dtype, own[name].dtype)
            if problem:
                raise ModelError(f"teacher.weights '{path}': {problem}; save the weights in the model's own dtypes")


def _distilens_meta(path: Path) -> dict[str, Any] | None:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path, error=ModelError)
    except ModelError:
        return None  # some other tool's JSON (or not JSON): not ours, so the config's arch applies
    return meta if isinstance(meta, dict) and str(meta.get("format", "")).startswith("distilens-model/") else None


def load_teacher(
    weights: str | Path,
    *,
    arch: str | None,
    args: Mapping[str, Any] | None,
    spec: InputSpec,
    trust_torchscript: bool = False,
) -> nn.Module:
    """Load a trained teacher from a file and check it fits the data; returns it in eval mode.

    Args:
        weights: ``.safetensors`` (with a distilens ``.json`` beside it, or ``arch``), a
            ``.pt``/``.pth`` state dict (with ``arch``), a TorchScript archive, or
            ``hf:PATH``, a Hugging Face sequence-classification folder (:func:`load_hf_teacher`).
        arch: Zoo name or ``import:package.module:factory``; ignored for TorchScript and
            for safetensors with a distilens ``.json`` (which names its architecture).
        args: Keyword arguments of ``arch``.
        spec: The data's :class:`InputSpec`: the teacher must take ``spec.shape`` inputs
            and predict ``spec.num_classes`` classes.
        trust_torchscript: Allow TorchScript archives (they carry code).

    Raises:
        ModelError: missing file, pickled objects, untrusted TorchScript, weights that do
            not fit the architecture, or a teacher that does not fit the data.

    Example:
        >>> teacher = load_teacher("resnet.pt", arch="resnet", args={"depth": 20}, spec=bundle.spec)
    """
    if str(weights).startswith(HF_PREFIX):  # a Hugging Face folder (models/hf.py): safetensors, no remote code
        return load_hf_teacher(weights, spec)[0]
    path = Path(weights)
    if path.is_dir():
        raise ModelError(f"teacher.weights '{path}' is a folder; give the path of a weights file (.safetensors, .pt), or hf:PATH for a Hugging Face model folder")
    if not path.is_file():
        raise ModelError(f"teacher.weights '{path}' does not exist; check the path")
    meta = _distilens_meta(path) if path.suffix == ".safetensors" else None
    if meta is not None:  # its .json names the architecture: code only with the config's own opt-in
        model = load_model(path, allow_import=str(meta.get("arch")) == arch, trust_torchscript=trust_torchscript)[0]
    elif is_torchscript(path):
        if not trust_torchscript:
            raise ModelError(
                f"teacher.weights '{path}' is a TorchScript archive, which carries code that runs when the model is called; "
                "if you trust its source, set teacher.trust_torchscript: true"
            )
        model = torch.jit.load(str(path), map_location="cpu")
    else:
        if not arch:
            raise ModelError(f"teacher.weights '{path}' holds weights only; set teacher.arch to a zoo name or import:package.module:factory")
        state = _load_state_dict(path)
        model = build_architecture(arch, spec, args)
        _check_dtypes(model, state, path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:400]
            raise ModelError(f"teacher.weights '{path}' do not fit teacher.arch '{arch}' with teacher.args {dict(args or {})}: {detail}") from None
    return check_teacher(model, spec)


def build_for_data(arch: str, spec: InputSpec, args: Mapping[str, Any], role: str) -> nn.Module:
    """Build a zoo model from a config's arch and args, and check it on the data's input shape.

    Args the architecture cannot be built with (negative or zero sizes, sizes too large to
    allocate) and inputs the model cannot take (an image_size below its minimum) are one
    :class:`ModelError` each, found before any training.

    Returns:
        The model, in training mode.

    Example:
        >>> student = build_for_data("cnn", bundle.spec, {"width": 8}, "student")
    """
    with warnings.catch_warnings(record=True) as caught:  # kept back until the model is known to be usable
        warnings.simplefilter("always")
        try:
            model = build_model(arch, spec, **args)
        except DistilensError as exc:
            raise ModelError(f"{role}.arch/args: {exc}") from None
        except (MemoryError, OverflowError) as exc:
            raise ModelError(f"{role}.args {dict(args)}: the model needs more memory than there is ({type(exc).__name__}); "
                             "choose smaller args") from None
        except RuntimeError as exc:  # torch refuses the sizes: negative, or too large to allocate
            first = str(exc).splitlines()[0][:200]
            what = "needs more memory than there is" if "allocate" in first or "overflow" in first else "cannot be built"
            raise ModelError(f"{role}.args {dict(args)}: the model {what} ({first}); choose other args") from None
    if any(p.numel() == 0 for p in model.parameters()):
        raise ModelError(f"{role}.args {dict(args)}: the model has layers of size 0; give every width and size at least 1")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return check_teacher(model, spec, role).train()


def check_teacher(model: nn.Module, spec: InputSpec, role: str = "teacher") -> nn.Module:
    """Run ``model`` once on two example inputs of ``spec`` (zeros; token ids for text); raise a :class:`ModelError` saying what does not fit.

    Returns:
        ``model`` in eval mode.
    """
    model.eval()
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else "cpu"
    x = example_inputs(spec, 2, device=device)
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        fix = "use a model made for this data's inputs" + (" or a larger data.image_size" if spec.kind == "image" else "")
        raise ModelError(
            f"{role} cannot take inputs of shape {tuple(spec.shape)}: {first[:300]}; {role} and data must match: {fix}"
        ) from None
    if not isinstance(out, Tensor):
        raise ModelError(
            f"{role} returns a {type(out).__name__}, not a tensor of logits; wrap it in a module whose forward returns (B, C) logits"
        )
    if out.dim() != 2 or out.shape[0] != 2:
        raise ModelError(f"{role} returns shape {tuple(out.shape)} for a batch of 2; it must return (B, {spec.num_classes}) logits")
    if out.shape[1] != spec.num_classes:
        raise ModelError(
            f"{role} predicts {out.shape[1]} classes, the data has {spec.num_classes}; use a model trained on this data's classes"
        )
    return model
