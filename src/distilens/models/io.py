"""Safe model files: weights in safetensors, the architecture in a JSON file beside them.

Nothing here unpickles: a ``.safetensors`` file holds only tensors, and the JSON names a
registered architecture and its arguments.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from ..io import atomic_write, atomic_write_json
from ..limits import MAX_IMAGE_PIXELS, read_json
from .imports import IMPORT_PREFIX, build_architecture
from .zoo import build_model, count_params

__all__ = [
    "save_model",
    "load_model",
    "load_run_model",
    "read_model_meta",
    "spec_from_meta",
    "check_weights_fit",
    "dtype_problem",
    "file_sha256",
    "state_dict_digest",
    "tensors_digest",
]

_FORMAT = "distilens-model/1"
ROLES = ("teacher", "student", "baseline", "plain_kd", "teacher_reseed", "init")  # the last three: issue 15
# The fix to suggest when a .safetensors file cannot be parsed.
UNREADABLE_SAFETENSORS = (
    "it is not a complete safetensors file (cut short, or another format); save or download it again"
)


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a model's state dict."""
    return tensors_digest(model.state_dict())


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of named tensors (order-independent)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(
    model: nn.Module, path: str | Path, *, arch: str, args: dict[str, Any], spec: InputSpec
) -> Path:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json, both atomically.

    Args:
        model: The module whose state dict is saved.
        path: Destination of the weights, e.g. ``runs/x/student.safetensors``.
        arch: Registered architecture name used to rebuild it.
        args: The architecture's arguments.
        spec: Input spec of the data it was trained on (shape, classes, normalisation).
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": _FORMAT}))
    meta = {
        "format": _FORMAT,
        "arch": arch,
        "args": args,
        "input_spec": spec.to_dict(),
        "params": count_params(model),
        "sha256": file_sha256(path),
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The keys a model .json must hold, and their types.
_META_KEYS: dict[str, type | tuple[type, ...]] = {"format": str, "arch": str, "args": dict, "input_spec": dict, "sha256": str}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RESAVE = "the file was changed or is not from distilens; use the run folder as `distilens run` wrote it, or run again"


def read_model_meta(meta_path: str | Path) -> dict[str, Any]:
    """A distilens model .json, read through the bounded JSON reader and checked key by key.

    Returns:
        The description: ``format``, ``arch`` (str), ``args`` (dict), ``input_spec`` (dict,
        checked by :func:`spec_from_meta`), ``sha256`` (64 hex digits) and ``params``.

    Raises:
        ModelError: not JSON, not an object, a required key missing or of the wrong type, or
            no digest (a model without one is never loaded: nothing would catch a changed file).
    """
    meta_path = Path(meta_path)
    meta = read_json(meta_path, f"'{meta_path}'", error=ModelError)
    if not isinstance(meta, dict):
        raise ModelError(f"'{meta_path}' is a JSON {type(meta).__name__}, not a distilens model description; {_RESAVE}")
    if meta.get("format") != _FORMAT:
        raise ModelError(f"'{meta_path}' is not a distilens model description (format {str(meta.get('format'))[:40]!r})")
    for key, kind in _META_KEYS.items():
        if key not in meta:
            what = "its SHA-256 digest, so the weights cannot be checked" if key == "sha256" else f"'{key}'"
            raise ModelError(f"'{meta_path}' lacks {what}; {_RESAVE}")
        if not isinstance(meta[key], kind):
            raise ModelError(f"'{meta_path}': '{key}' is a {type(meta[key]).__name__}, not a {kind.__name__}; {_RESAVE}")  # type: ignore[union-attr]
    if not _SHA256.fullmatch(meta["sha256"]):
        raise ModelError(f"'{meta_path}': 'sha256' is not a SHA-256 digest; {_RESAVE}")
    return meta


def spec_from_meta(d: dict[str, Any], where: str) -> InputSpec:
    """The :class:`InputSpec` of a model .json, with sizes bounded (a forged spec must not allocate terabytes)."""
    try:
        spec = InputSpec.from_dict(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: 'input_spec' is incomplete or malformed ({type(exc).__name__}: {str(exc)[:80]}); {_RESAVE}") from None
    dims = {"image": 3, "table": 1, "text": 1}.get(spec.kind)
    problem = None
    if dims is None:
        problem = f"kind {spec.kind!r} is not image, table or text"
    elif len(spec.shape) != dims or any(s < 1 for s in spec.shape):
        problem = f"shape {list(spec.shape)} is not a {spec.kind} shape"
    elif spec.kind == "image" and (spec.shape[0] > 4 or spec.shape[1] * spec.shape[2] > MAX_IMAGE_PIXELS):
        problem = f"shape {list(spec.shape)} is larger than any image distilens reads"
    elif spec.kind != "image" and spec.shape[0] > 1_000_000:
        problem = f"shape {list(spec.shape)} is larger than any input distilens reads"
    elif not 1 <= spec.num_classes <= 1_000_000 or not 0 <= spec.vocab_size <= 100_000_000:
        problem = "the number of classes or the vocabulary size is out of range"
    elif not all(math.isfinite(v) for v in (*spec.mean, *spec.std)) or any(v <= 0 for v in spec.std):
        problem = "its normalisation holds non-finite values or a std that is not positive"
    if problem:
        raise ModelError(f"{where}: 'input_spec': {problem}; {_RESAVE}")
    return spec


def safetensors_layout(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype name)}`` from a .safetensors header, without reading the tensors.

    Raises:
        ModelError: not a complete safetensors file.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read weights '{path}': {str(exc)[:200]}; {UNREADABLE_SAFETENSORS}") from None


_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool, "C64": torch.complex64}


def dtype_problem(name: str, have: torch.dtype | None, want: torch.dtype) -> str | None:
    """Why a tensor of dtype ``have`` cannot fill a model tensor of dtype ``want`` (``None``: it can).

    Floating-point weights may be given in another floating-point precision; anything else
    (complex numbers, integers for floats, floats for integer buffers) is refused instead of
    being cast silently.
    """
    if have == want:
        return None
    if have is not None and want.is_floating_point and have.is_floating_point:
        return None
    return f"'{name}' holds {str(have).replace('torch.', '') if have else 'an unsupported dtype'} where the model holds {str(want).replace('torch.', '')}"


def check_weights_fit(model: nn.Module, layout: Mapping[str, tuple[tuple[int, ...], torch.dtype | None]], where: str) -> None:
    """Names, shapes and dtypes of weights against a model's state dict (a meta-device one will do).

    Raises:
        ModelError: a missing or unexpected name, a shape or a dtype that differs.
    """
    state = model.state_dict()
    missing = [k for k in state if k not in layout]
    extra = [k for k in layout if k not in state]
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise ModelError(f"{where}: the weights do not fit the architecture ({detail})")
    for name, t in state.items():
        shape, dtype = layout[name]
        if tuple(shape) != tuple(t.shape):
            raise ModelError(f"{where}: '{name}' has shape {list(shape)} where the architecture has {list(t.shape)}")
        problem = dtype_problem(name, dtype, t.dtype)
        if problem:
            raise ModelError(f"{where}: {problem}; save the weights in the model's own dtypes")


def _build_checked(arch: str, spec: InputSpec, args: dict[str, Any], path: Path,
                   build: Callable[..., nn.Module], *, meta_device: bool = True) -> nn.Module:
    """Build ``arch`` once its names, shapes and dtypes match the file's.

    With ``meta_device`` a copy without memory is built and checked first, so that forged
    args (``hidden: [1000000000]``) fail before anything is allocated: the weights file,
    whose digest matched, bounds what the real build may take.
    """
    layout = {k: (shape, _ST_DTYPES.get(dtype)) for k, (shape, dtype) in safetensors_layout(path).items()}
    where = f"weights '{path}' for architecture '{arch[:120]}'"
    if meta_device:
        with torch.device("meta"):
            skeleton = build(arch, spec, args)
        check_weights_fit(skeleton, layout, where)
    model = build(arch, spec, args)
    check_weights_fit(model, layout, where)
    return model


def _zoo(arch: str, spec: InputSpec, args: dict[str, Any]) -> nn.Module:
    return build_model(arch, spec, **args)


def load_model(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    allow_import: bool = False,
    trust_torchscript: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns ``(model, meta)``.

    The .json must be complete (:func:`read_model_meta`) and the weights must match its
    digest; the architecture is built from the zoo, and only after its shapes and dtypes
    matched the file's. An import path or TorchScript named in the .json needs its opt-in
    (see :func:`load_run_model`).

    Raises:
        ModelError: missing, incomplete or tampered files, unknown architecture, mismatching
            weights, or code without its opt-in.
    """
    path = Path(path)
    meta = read_model_meta(_existing(path.with_suffix(".json")))
    return _load_described(path, meta, map_location, allow_import=allow_import, trust_torchscript=trust_torchscript)


def load_run_model(
    run_dir: str | Path,
    role: str,
    *,
    allow_import: bool = False,
    trust_torchscript: bool = False,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``role`` (teacher, student, baseline, …) of a run folder: the one way commands load a run's models.

    A run folder is data: by default a model is built only from a zoo name and safetensors
    weights. A model .json that names an import path (code that runs on import) or
    TorchScript (code inside the archive) is refused unless the opt-in is given by the
    person running the command (``--allow-import`` / ``--trust-torchscript``), never by
    anything in the folder, its config.yaml included. The .json is checked key by key and
    the weights against its digest, always.

    Args:
        run_dir: A folder written by ``distilens run``.
        role: ``teacher``, ``student``, ``baseline``, or a control or reference point of the
            explain stage (``plain_kd``, ``teacher_reseed``, ``init``).
        allow_import: Build an ``import:package.module:factory`` architecture.
        trust_torchscript: Load ``ROLE.torchscript`` (the weights still come from the
            digest-checked ``ROLE.safetensors``).
        map_location: Device of the loaded weights.

    Returns:
        ``(model in eval mode, its .json description)``.

    Raises:
        ModelError: missing or incomplete files, a digest that does not match, weights that
            do not fit, or code that needs an opt-in that was not given.

    Example:
        >>> teacher, meta = load_run_model("runs/digits-demo", "teacher")
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    path = Path(run_dir) / f"{role}.safetensors"
    meta = read_model_meta(_existing(path.with_suffix(".json")))
    return _load_described(path, meta, map_location, allow_import=allow_import, trust_torchscript=trust_torchscript,
                           flags=True)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist; check the path (a run folder holds ROLE.safetensors + ROLE.json)")
    return path


def _load_described(path: Path, meta: dict[str, Any], map_location: str | torch.device, *, allow_import: bool = False,
                    trust_torchscript: bool = False, flags: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Load after the opt-in checks; ``flags``: the error names the command-line opt-in (commands on a run folder)."""
    arch, where = meta["arch"], f"'{path.with_suffix('.json')}'"

    def refuse(what: str, flag: str) -> ModelError:
        how = (f"if you trust where this run folder came from, pass {flag} (the folder's own config does not count)"
               if flags else "distilens does not run code named in a model file here; use a model of the zoo")
        return ModelError(f"{where} {what}; {how}")

    if arch == "torchscript":
        if not trust_torchscript:
            raise refuse(f"names a TorchScript archive ({path.with_suffix('.torchscript').name}), which carries code "
                         "that runs when the model is called", "--trust-torchscript")
        return _load(path, map_location, _torchscript(path.with_suffix(".torchscript"), map_location), meta, meta_device=False)
    if arch.startswith(IMPORT_PREFIX):
        if not allow_import:
            raise refuse(f"builds the model with '{arch[:120]}', which imports and runs Python code", "--allow-import")
        return _load(path, map_location, lambda a, spec, args: build_architecture(a, spec, args), meta)
    # minilm loads the packaged encoder inside its constructor (which a meta device refuses);
    # its size is fixed by that package, whatever its args.
    return _load(path, map_location, _zoo, meta, meta_device=arch not in _BUILDS_FROM_PACKAGE)


_BUILDS_FROM_PACKAGE = frozenset({"minilm"})


def _torchscript(archive: Path, map_location: str | torch.device) -> Callable[..., nn.Module]:
    def build(arch: str, spec: InputSpec, args: dict[str, Any]) -> nn.Module:
        if not archive.is_file():
            raise ModelError(f"'{archive}' does not exist; the run folder is incomplete")
        try:
            return torch.jit.load(str(archive), map_location=map_location)
        except RuntimeError as exc:
            raise ModelError(f"'{archive}' is not a TorchScript archive ({str(exc).splitlines()[0][:200]})") from None

    return build


def _load(path: Path, map_location: str | torch.device, build: Callable[..., nn.Module], meta: dict[str, Any], *,
          meta_device: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Check the digest, then build (after a meta-device check of the layout), then load the weights."""
    meta_path = path.with_suffix(".json")
    _existing(path)
    if file_sha256(path) != meta["sha256"]:
        raise ModelError(f"'{path}' does not match the checksum in '{meta_path.name}'; the file was changed or cut short")
    spec = spec_from_meta(meta["input_spec"], f"'{meta_path}'")
    model = _build_checked(meta["arch"], spec, meta["args"], path, build, meta_device=meta_device)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read weights '{path}': {exc}; {UNREADABLE_SAFETENSORS}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"weights in '{path}' do not fit architecture '{meta['arch']}': {first}") from None
    return model.eval(), meta
