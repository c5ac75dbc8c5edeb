"""The teacher's outputs, computed once and stored, so that distillation never runs it.

A cache holds, for every sample of one split: the teacher's logits (full, or top-k), its
top class, and optionally the teacher's feature maps at named layers and its explanation
maps (Grad-CAM at named layers, input gradients) for its top class, which feature and
explanation losses need. It is keyed by SHA-256 over the teacher's state dict, the split's
fingerprint (normalised inputs and labels, so the preprocessing is part of the key) and
the storage options (layers, maps, dtype, top-k). Changing any gives another key, and a
stale file is never served.

Stored augmented views (FKD, Shen & Xing 2022; :mod:`distilens.distill.views`): built with
``augment`` and ``views=K``, the cache holds the teacher's logits of K augmented views of
every image, view-major (row k·N + i is view k of sample i), and each op's parameters of
those views (``view_params/J``, one (K·N, …) tensor per op), so that the student trains on
exactly the labelled views. The key then also covers the augmentation (every option of
every op), K and the views' seed.

Storage options:
    ``dtype="fp16"`` halves the file and memory; every stored value x comes back as
    fp16(x), within |x|·2⁻¹¹ (or 2⁻²⁵ below fp16's normal range).
    ``top_k=k`` keeps the k largest log-probabilities (at T = 1) and their classes and
    spreads the remaining probability mass r uniformly over the other C − k classes. The
    served logits are ``log p`` for the top k and ``log(r / (C − k))`` elsewhere, so
    ``softmax(logits)`` is that distribution exactly at T = 1. At another temperature the
    ratios among the top k are exact (logit differences are kept), but the tail is flat:
    for T > 1 it carries *at least* the true tail's tempered mass relative to the top k
    (Jensen: a flat tail maximises Σ p_j^{1/T}), for T < 1 at most.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..data.augment import Augment
from ..data.bundle import Split, iterate_batches, map_by_length
from ..explain import differentiable as _diff
from ..io import atomic_write
from ..models.capabilities import unwrap
from ..models.io import state_dict_digest, tensors_digest
from ..models.modes import eval_mode
from ..models.tap import (
    FeatureTap, check_pseudo_layer, default_feature_layer, get_layer, is_pseudo_layer, last_spatial_layer, tapped_output,
)
from .views import label_stored_views, rows_of_view

__all__ = ["SoftLabelCache"]

_VERSION = "softlabels/1"  # part of every key: changing it invalidates all caches
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _resolve_layers(
    teacher: nn.Module, split: Split, names: Sequence[str], device: torch.device, features: bool = False
) -> dict[str, str]:
    """``{asked name: layer name}``, ``auto`` → the teacher's last spatial layer (``pooled`` for
    a text model's features); names and pseudo-layers checked."""
    out: dict[str, str] = {}
    for name in names:
        if name == "auto":
            example = split.inputs[:1].to(device)
            out[name] = default_feature_layer(teacher, example) if features else last_spatial_layer(teacher, example)
        elif is_pseudo_layer(name):
            check_pseudo_layer(teacher, name)
            out[name] = name
        else:
            get_layer(teacher, name)  # raises ModelError with close names
            out[name] = name
    return out


def _options(dtype: str, top_k: int | None, features: dict[str, str], gradcam: dict[str, str], grads: bool) -> dict:
    return {
        "dtype": dtype,
        "top_k": top_k,
        "features": sorted(set(features.values())),
        "gradcam": sorted(set(gradcam.values())),
        "input_gradients": bool(grads),
    }


def _view_options(augment: Augment | None, views: int | None, view_seed: int) -> dict | None:
    """The stored views' part of the key, or ``None`` without views (a plain cache keeps its old key)."""
    if views is None:
        return None
    if augment is None or not augment.ops:
        raise ValueError("stored views need an augmentation with at least one op (augment=parse_augment([...]))")
    if int(views) < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    return {"augment": augment.to_config(), "views": int(views), "view_seed": int(view_seed)}


class SoftLabelCache:
    """Teacher logits (and optional maps) for every sample of one split, addressed by sample index.

    Args:
        logits: (N, C) teacher logits (float32 or wider; stored per ``dtype``/``top_k``).
        key: Hex digest naming the (teacher weights, data, options) it was computed from.
        dtype: ``fp32`` or ``fp16`` storage of every float tensor.
        top_k: Keep only the k largest probabilities per row (1 ≤ k < C), or ``None``.
        features: ``{layer: (N, ...) teacher outputs}``.
        gradcam: ``{layer: (N, h, w) teacher Grad-CAM for its top class}``.
        input_gradients: (N, *input) ∂y_top/∂x of the teacher, or ``None``.
        aliases: ``{"auto": layer}`` so objectives may ask for ``auto``.
        views: K stored augmented views per sample: ``logits`` has K·N rows, view-major.
        view_params: Per op, the (K·N, …) parameters of the stored views (``views`` > 1 or an augmentation).
        augment: The ops' config (``Augment.to_config()``) the views were made with.

    Example:
        >>> cache = SoftLabelCache.build(teacher, bundle.train, dtype="fp16", features=["auto"])
        >>> cache[torch.tensor([0, 5])].shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        logits: Tensor,
        key: str,
        *,
        dtype: Literal["fp32", "fp16"] = "fp32",
        top_k: int | None = None,
        features: dict[str, Tensor] | None = None,
        gradcam: dict[str, Tensor] | None = None,
        input_gradients: Tensor | None = None,
        aliases: dict[str, str] | None = None,
        views: int = 1,
        view_params: Sequence[Tensor] = (),
        augment: list[dict] | None = None,
    ) -> None:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'fp32' or 'fp16', got {dtype!r}")
        n, c = logits.shape
        if top_k is not None and not 1 <= int(top_k) < c:
            raise ValueError(f"top_k must be in [1, {c - 1}] for {c} classes, got {top_k}")
        if views < 1 or n % views:
            raise ValueError(f"{n} logit rows cannot hold {views} views of every sample")
        self.key, self.dtype, self.top_k, self.num_classes = key, dtype, top_k, int(c)
        self.aliases = dict(aliases or {})
        self.views, self.augment = int(views), augment
        store: dict[str, Tensor] = {"top_class": logits.argmax(1).long()}
        if top_k is None:
            store["logits"] = logits.float()
        else:
            logp = F.log_softmax(logits.float(), dim=1)
            vals, idx = logp.topk(int(top_k), dim=1)
            # log of the mean tail probability, from log-probs: exact even when r underflows.
            tail = torch.logsumexp(logp.scatter(1, idx, float("-inf")), dim=1) - math.log(c - int(top_k))
            store.update(topk_logp=vals, topk_index=idx.int(), tail_logp=tail)
        for name, t in (features or {}).items():
            store[f"features/{name}"] = t
        for name, t in (gradcam or {}).items():
            store[f"gradcam/{name}"] = t
        if input_gradients is not None:
            store["input_gradients"] = input_gradients
        for j, t in enumerate(view_params):
            store[f"view_params/{j}"] = t
        self._store = {}
        for name, t in store.items():
            if t.shape[0] != n:
                raise ValueError(f"cache tensor '{name}' has {t.shape[0]} rows, the logits {n}")
            if t.is_floating_point():
                t = t.detach().to(_DTYPES[dtype])
                if not torch.isfinite(t).all():
                    raise ValueError(f"cache tensor '{name}' is not finite in {dtype}; store it in fp32")
            self._store[name] = t.contiguous()

    # ------------------------------------------------------------------ building
    @staticmethod
    def key_for(
        teacher: nn.Module,
        split: Split,
        *,
        dtype: str = "fp32",
        top_k: int | None = None,
        features: Sequence[str] = (),
        gradcam: Sequence[str] = (),
        input_gradients: bool = False,
        augment: Augment | None = None,
        views: int | None = None,
        view_seed: int = 0,
    ) -> str:
        """The cache key of ``teacher`` on ``split`` with these storage options (and stored views)."""
        device = next(teacher.parameters()).device
        h = hashlib.sha256(_VERSION.encode())
        h.update(state_dict_digest(teacher).encode())
        h.update(split.fingerprint().encode())
        opts = _options(
            dtype, top_k, _resolve_layers(teacher, split, features, device, features=True),
            _resolve_layers(teacher, split, gradcam, device), input_gradients,
        )
        if opts != _options("fp32", None, {}, {}, False):  # default options keep the old keys
            h.update(json.dumps(opts, sort_keys=True).encode())
        view_opts = _view_options(augment, views, view_seed)
        if view_opts is not None:
            h.update(json.dumps(view_opts, sort_keys=True).encode())
        return h.hexdigest()

    @classmethod
    def build(
        cls,
        teacher: nn.Module,
        split: Split,
        *,
        batch_size: int = 512,
        device: str | torch.device | None = None,
        dtype: Literal["fp32", "fp16"] = "fp32",
        top_k: int | None = None,
        features: Sequence[str] = (),
        gradcam: Sequence[str] = (),
        input_gradients: bool = False,
        augment: Augment | None = None,
        views: int | None = None,
        view_seed: int = 0,
    ) -> "SoftLabelCache":
        """Run ``teacher`` once over ``split`` (or over K augmented views of it) in eval mode (mode restored).

        Args:
            teacher: The trained teacher.
            split: The split the student trains on (row i ↔ sample i).
            batch_size: Samples per teacher forward.
            device: Where the teacher runs (default: where its parameters are).
            dtype, top_k: Storage options (see the module docstring).
            features: Layers (or ``auto``) whose outputs to store, for feature losses.
            gradcam: Layers (or ``auto``) whose Grad-CAM (for the top class) to store.
            input_gradients: Store ∂y_top/∂x for Jacobian matching.
            augment, views, view_seed: Store the logits of ``views`` augmented views per
                image, made by ``augment`` from the seed ``view_seed``, and their parameters
                (logits only: no features or maps).
        """
        device = torch.device(device) if device is not None else next(teacher.parameters()).device
        view_opts = _view_options(augment, views, view_seed)
        if view_opts is not None:
            if features or gradcam or input_gradients:
                raise ValueError("stored views hold the teacher's logits only; features and explanation maps of "
                                 "augmented views are not stored (use logit losses: kd, dkd, ce, leaf_kd)")
            key = cls.key_for(teacher, split, dtype=dtype, top_k=top_k, augment=augment, views=views, view_seed=view_seed)
            logits, params = label_stored_views(teacher, split, augment, int(views), seed=view_seed,  # type: ignore[arg-type]
                                                batch_size=batch_size, device=device)
            return cls(logits, key, dtype=dtype, top_k=top_k, views=int(views), view_params=params,
                       augment=view_opts["augment"])
        feat_names = _resolve_layers(teacher, split, features, device, features=True)
        cam_names = _resolve_layers(teacher, split, gradcam, device)
        aliases = {k: v for k, v in {**feat_names, **cam_names}.items() if k == "auto"}
        key = cls.key_for(teacher, split, dtype=dtype, top_k=top_k, features=features, gradcam=gradcam,
                          input_gradients=input_gradients)
        layers = sorted(set(feat_names.values()))
        pad = getattr(unwrap(teacher), "pad_id", None)
        if pad is not None and not (layers or cam_names or input_gradients) and not split.lazy:
            # Text: rows by length, each batch cut to its longest row (transfer copies are mostly short).
            with eval_mode(teacher), torch.no_grad():
                logits = map_by_length(lambda x: teacher(x).float(), split.inputs.to(device), int(pad), batch_size)
            return cls(logits.cpu(), key, dtype=dtype, top_k=top_k)
        chunks: dict[str, list[Tensor]] = {}
        with eval_mode(teacher):
            for x, _, _ in iterate_batches(split, batch_size):
                x = x.to(device)
                with torch.no_grad(), FeatureTap(teacher, layers) as tap:
                    logits = teacher(x).float()
                    feats = {f"features/{n}": tapped_output(tap, teacher, n, x).float() for n in layers}
                out = {"logits": logits, **feats}
                target = logits.argmax(1)
                for name in sorted(set(cam_names.values())):
                    out[f"gradcam/{name}"] = _diff.differentiable_gradcam(teacher, x, target, name, create_graph=False).detach()
                if input_gradients:
                    out["input_gradients"] = _diff.input_gradients(teacher, x, target, create_graph=False).detach()
                for name, t in out.items():
                    chunks.setdefault(name, []).append(t.cpu())
        full = {name: torch.cat(ts) for name, ts in chunks.items()}
        return cls(
            full.pop("logits"), key, dtype=dtype, top_k=top_k,
            features={n: full[f"features/{n}"] for n in layers},
            gradcam={n: full[f"gradcam/{n}"] for n in sorted(set(cam_names.values()))},
            input_gradients=full.get("input_gradients"), aliases=aliases,
        )

    # ------------------------------------------------------------------ storage
    @staticmethod
    def filename(key: str) -> str:
        return f"softlabels-{key[:24]}.safetensors"

    def save(self, directory: str | Path) -> Path:
        """Write the cache atomically into ``directory``; returns the file's path."""
        path = Path(directory) / self.filename(self.key)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._store.items()}
        meta = {
            "format": _VERSION, "key": self.key, "dtype": self.dtype, "top_k": str(self.top_k or 0),
            "num_classes": str(self.num_classes), "aliases": json.dumps(self.aliases, sort_keys=True),
            "sha256": tensors_digest(tensors),
        }
        if self.views > 1 or self.augment is not None:
            meta.update(views=str(self.views), augment=json.dumps(self.augment, sort_keys=True))
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path, *, key: str, num_samples: int) -> "SoftLabelCache":
        """Read a cache file and check it is the one for ``key`` with ``num_samples`` rows.

        Raises:
            ValueError: the file is unreadable, cut short, or holds another key or shape.
        """
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"cannot read soft-label cache '{path}': {exc}") from None
        if meta.get("key") != key or ("logits" not in tensors and "topk_logp" not in tensors):
            raise ValueError(f"soft-label cache '{path}' belongs to another teacher or data set")
        if "sha256" in meta and meta["sha256"] != tensors_digest(tensors):  # older files carry no digest
            raise ValueError(f"soft-label cache '{path}' does not match its SHA-256 digest (changed on disk)")
        try:
            cache = cls._from_store(tensors, meta)
        except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise ValueError(f"soft-label cache '{path}' is malformed: {exc}") from None
        rows = num_samples * cache.views
        bad = [k for k, t in tensors.items() if t.shape[0] != rows]
        if bad or not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            shape = tuple(tensors[bad[0]].shape) if bad else "non-finite values"
            raise ValueError(f"soft-label cache '{path}' has {shape}, expected {rows} finite rows")
        return cache

    @classmethod
    def _from_store(cls, tensors: dict[str, Tensor], meta: dict[str, str]) -> "SoftLabelCache":
        dtype = meta.get("dtype", "fp32")
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        cache = cls.__new__(cls)
        cache.key, cache.dtype = meta["key"], dtype
        cache.top_k = int(meta.get("top_k", "0")) or None
        cache.aliases = json.loads(meta.get("aliases", "{}"))
        cache.views = int(meta.get("views", "1"))
        cache.augment = json.loads(meta["augment"]) if "augment" in meta else None
        if cache.views < 1:
            raise ValueError(f"views {cache.views}")
        if cache.top_k is None:
            logits = tensors["logits"]
            if logits.dim() != 2:
                raise ValueError(f"logits of shape {tuple(logits.shape)}")
            cache.num_classes = int(logits.shape[1])
        else:
            cache.num_classes = int(meta["num_classes"])
            idx, vals, tail = tensors["topk_index"], tensors["topk_logp"], tensors["tail_logp"]
            ok = idx.shape == vals.shape == (tail.shape[0], cache.top_k) and tail.dim() == 1
            if not ok or int(idx.min()) < 0 or int(idx.max()) >= cache.num_classes:
                raise ValueError("top-k tensors disagree in shape or index out of range")
        if "top_class" not in tensors:  # files written before the top class was stored
            tensors["top_class"] = tensors["logits"].argmax(1)
        cache._store = {k: v.contiguous() for k, v in tensors.items()}
        return cache

    @classmethod
    def load_or_build(
        cls,
        teacher: nn.Module,
        split: Split,
        *,
        directories: Iterable[str | Path],
        save_to: str | Path,
        batch_size: int = 512,
        **options: object,
    ) -> tuple["SoftLabelCache", bool]:
        """Serve a valid cache from the first of ``directories`` that holds one, else build it.

        The result is always saved into ``save_to`` (copied when it came from elsewhere).
        ``options`` are :meth:`build`'s storage options (dtype, top_k, features, gradcam,
        input_gradients, and augment/views/view_seed for stored views), e.g.
        ``**teacher_cache_options(objectives)``.

        Returns:
            ``(cache, hit)`` where ``hit`` says it was read rather than computed.
        """
        key = cls.key_for(teacher, split, **options)  # type: ignore[arg-type]
        for directory in directories:
            path = Path(directory) / cls.filename(key)
            if not path.is_file():
                continue
            try:
                cache = cls.load(path, key=key, num_samples=len(split))
            except ValueError as exc:
                warnings.warn(f"{exc}; computing the soft labels again", stacklevel=2)
                continue
            if Path(save_to).resolve() != Path(directory).resolve():
                cache.save(save_to)
            return cache, True
        cache = cls.build(teacher, split, batch_size=batch_size, **options)  # type: ignore[arg-type]
        cache.save(save_to)
        return cache, False

    # ------------------------------------------------------------------ serving
    def to(self, device: str | torch.device) -> "SoftLabelCache":
        """Move the stored tensors (once) to the device the student trains on."""
        self._store = {k: v.to(device) for k, v in self._store.items()}
        return self

    def _rows(self, name: str, index: Tensor) -> Tensor:
        t = self._store[name]
        return t[index.to(t.device)]

    def __getitem__(self, index: Tensor) -> Tensor:
        """(B,) sample indices → (B, C) float32 teacher logits (reconstructed for top-k)."""
        if self.top_k is None:
            return self._rows("logits", index).float()
        vals = self._rows("topk_logp", index).float()
        idx = self._rows("topk_index", index).long()
        tail = self._rows("tail_logp", index).float()
        full = tail.unsqueeze(1).expand(-1, self.num_classes).clone()  # (B,) -> (B, C)
        return full.scatter_(1, idx, vals)

    @property
    def logits(self) -> Tensor:
        """(N, C) float32 logits of every sample (reconstructed for top-k storage)."""
        anchor = self._store["top_class"]
        return self[torch.arange(anchor.shape[0], device=anchor.device)]

    def teacher_target(self, index: Tensor) -> Tensor:
        """(B,) int64 top class of the teacher (from its full-precision logits)."""
        return self._rows("top_class", index)

    def _layer(self, kind: str, layer: str) -> str:
        name = f"{kind}/{self.aliases.get(layer, layer)}"
        if name not in self._store:
            have = sorted(k.split("/", 1)[1] for k in self._store if k.startswith(kind + "/")) or ["none"]
            raise KeyError(
                f"the soft-label cache holds no {kind} for layer '{layer}' (it has: {', '.join(have)}); "
                f"build it with {kind}=['{layer}'] (see teacher_cache_options)"
            )
        return name

    def has(self, kind: Literal["features", "gradcam", "input_gradients"], layer: str | None = None) -> bool:
        """Whether the cache stores ``kind`` (for ``layer``)."""
        if kind == "input_gradients":
            return "input_gradients" in self._store
        return f"{kind}/{self.aliases.get(str(layer), layer)}" in self._store

    def features(self, layer: str, index: Tensor) -> Tensor:
        """(B, ...) float32 teacher outputs of ``layer`` (a stored name or ``auto``)."""
        return self._rows(self._layer("features", layer), index).float()

    def gradcam(self, layer: str, index: Tensor) -> Tensor:
        """(B, h, w) float32 teacher Grad-CAM at ``layer`` for its top class."""
        return self._rows(self._layer("gradcam", layer), index).float()

    def input_gradients(self, index: Tensor) -> Tensor:
        """(B, *input) float32 teacher input gradients for its top class."""
        if "input_gradients" not in self._store:
            raise KeyError("the soft-label cache holds no input gradients; build it with input_gradients=True")
        return self._rows("input_gradients", index).float()

    @property
    def num_samples(self) -> int:
        """Samples of the split the cache labels (rows / views)."""
        return len(self) // self.views

    def rows(self, index: Tensor, view: int = 0) -> Tensor:
        """Rows of samples ``index`` (B,) in stored view ``view`` (0 for a cache without views)."""
        return rows_of_view(index, view, self.num_samples)

    def view_params(self, index: Tensor, view: int) -> tuple[Tensor, ...]:
        """Each op's parameters of samples ``index`` in stored view ``view``: what ``Augment.apply`` takes."""
        n_ops = sum(1 for k in self._store if k.startswith("view_params/"))
        return tuple(self._rows(f"view_params/{j}", self.rows(index, view)) for j in range(n_ops))

    def nbytes(self) -> int:
        """Bytes held by the stored tensors."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def __len__(self) -> int:
        """Rows: samples × views."""
        return int(self._store["top_class"].shape[0])
