"""The run config: typed models, safe YAML loading, ``--set a.b=c`` overrides, dumping.

Every key has a default, so an empty file (or no file) is the digits demo. YAML is read
with ``yaml.safe_load`` only: no tags, nothing that runs code.

Example:
    >>> cfg = load_config(None, overrides=["distill.epochs=5", "student.args.width=4"])
    >>> cfg.distill.epochs
    5
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .registry import did_you_mean

__all__ = [
    "RunConfig",
    "DataConfig",
    "TeacherConfig",
    "StudentConfig",
    "TrainConfig",
    "OptimizerConfig",
    "LossConfig",
    "CacheConfig",
    "DistillConfig",
    "TransferConfig",
    "ExplainConfig",
    "ReportConfig",
    "RuntimeConfig",
    "load_config",
    "apply_overrides",
    "dump_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    source: str = "builtin:digits"
    target: str | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = Field(None, ge=1, le=4)  # imagefolder: 1 or 3 (null: 1 if all grey)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    skip_bad_files: bool = False
    # imagefolder: read images from their files batch by batch (true), hold them in memory
    # (false), or read lazily only when N×C×H×W×4 bytes exceed max_memory_bytes (auto).
    lazy: Literal["auto"] | bool = "auto"
    num_workers: int | None = Field(None, ge=0)  # lazy decoding processes; null: min(4, CPUs - 1)
    max_memory_bytes: int | None = Field(None, ge=1)  # null: 2 GiB

    @field_validator("lazy", mode="before")
    @classmethod
    def _auto_or_bool(cls, lazy: Any) -> Any:
        if lazy != "auto" and not isinstance(lazy, bool):
            raise ValueError("must be auto, true or false")
        return lazy
    # Text tables (csv/tsv/jsonl): the text column; set, the file is a text data set.
    text: str | None = None
    max_length: int = Field(128, ge=1)  # tokens per text; longer texts are truncated
    tokenizer: Literal["word", "teacher"] | None = None  # null: teacher when it brings one, else word
    max_vocab: int = Field(20000, ge=3)  # word-level vocabulary, [PAD] and [UNK] included
    min_freq: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must be below 0.9 so that data is left to train on"
            )
        return self


class TrainConfig(_Strict):
    # Defaults measured on digits (BENCHMARKS.md): a teacher trained at lr 1e-3 for 15
    # epochs is less over-confident than one trained hotter or longer, and distils better.
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)


class TeacherConfig(_Strict):
    arch: str = "cnn"
    args: dict[str, Any] = Field(default_factory=lambda: {"width": 64})
    weights: str | None = None
    # TorchScript archives carry code: loading one needs this explicit opt-in.
    trust_torchscript: bool = False
    train: TrainConfig = Field(default_factory=TrainConfig)


class StudentConfig(_Strict):
    arch: str = "cnn"
    args: dict[str, Any] = Field(default_factory=lambda: {"width": 8})
    # Text: start the student's token embeddings from the teacher's input embeddings (piece
    # means + PCA for a word vocabulary, the teacher's rows for its own ids; models/text_init.py).
    init: Literal["random", "teacher_embeddings"] = "random"


class OptimizerConfig(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    # The small student needs a hot learning rate: at 1e-3 it is under-trained in 30 epochs
    # and KD falls below the label-only baseline (BENCHMARKS.md).
    lr: float = Field(1e-2, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)


class LossConfig(BaseModel):
    """One term of the distillation objective: a registered loss name, its weight, its options."""

    model_config = ConfigDict(extra="allow")

    name: str
    weight: float | None = Field(None, ge=0.0)  # null: the loss's own measured default (often 1)

    def options(self) -> dict[str, Any]:
        """The loss's own options (everything but name and weight)."""
        return dict(self.model_extra or {})


def _default_losses() -> list[LossConfig]:
    return [LossConfig(name="kd", weight=1.0, temperature=4.0), LossConfig(name="ce", weight=0.1)]


class CacheConfig(_Strict):
    dtype: Literal["fp32", "fp16"] = "fp32"
    top_k: int | None = Field(None, ge=1)  # keep k logits, spread the rest of the mass


class TransferConfig(_Strict):
    """Text: how the ``distill.transfer_copies`` copies are made (data/text_augment.py)."""

    # drop: words left out (p 0.1), then a 1-5 word window (p 0.25), as before; tang: Tang et
    # al. 2019's mask ([MASK] for the teacher, [UNK] for the student) / same-class word
    # replacement / n-gram window, with the probabilities below (theirs by default).
    method: Literal["drop", "tang"] = "drop"
    p_mask: float = Field(0.1, ge=0.0, le=1.0)
    p_pos: float = Field(0.1, ge=0.0, le=1.0)
    p_ng: float = Field(0.25, ge=0.0, le=1.0)
    max_ngram: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _one_draw(self) -> "TransferConfig":
        if self.p_mask + self.p_pos > 1:
            raise ValueError(f"p_mask + p_pos must be at most 1 (one draw decides both), got {self.p_mask} + {self.p_pos}")
        return self

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``with_transfer_copies`` for this recipe (``drop`` keeps its fixed rates)."""
        if self.method == "drop":
            return {"method": "drop"}
        return {"method": "tang", "p_mask": self.p_mask, "p_pos": self.p_pos, "p_ng": self.p_ng,
                "max_ngram": self.max_ngram}


class DistillConfig(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    losses: list[LossConfig] = Field(default_factory=_default_losses, min_length=1)
    baseline: bool = True
    cache_dir: str | None = None
    cache: CacheConfig = Field(default_factory=CacheConfig)
    early_stopping: int | None = Field(None, ge=1)  # patience in epochs; null: train all epochs
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    # Text: perturbed copies per training text that the teacher labels for the student
    # (data/text_augment.py, Tang et al. 2019); the baseline trains on the original texts.
    transfer_copies: int = Field(0, ge=0)
    transfer: TransferConfig = Field(default_factory=TransferConfig)

    @field_validator("losses")
    @classmethod
    def _weights_not_all_zero(cls, losses: list[LossConfig]) -> list[LossConfig]:
        weights = [loss.weight for loss in losses]  # unset weights are checked once the losses are built
        if None not in weights and sum(weights) <= 0:  # type: ignore[arg-type]
            raise ValueError("the loss weights sum to 0; give at least one loss a positive weight")
        return losses


class ExplainConfig(_Strict):
    methods: list[str] = Field(default_factory=lambda: ["gradcam", "integrated_gradients"])
    n_samples: int = Field(128, ge=1)
    steps: int = Field(16, ge=2)  # deletion/insertion steps
    sanity: bool = True  # cascading randomisation check (Adebayo et al. 2018), first method
    sanity_samples: int = Field(16, ge=1)


class ReportConfig(_Strict):
    # Verdict thresholds: green when met, amber when within the margin, red beyond it.
    max_accuracy_drop: float = Field(0.01, ge=0.0)  # teacher − student, as a fraction
    min_agreement: float = Field(0.95, ge=0.0, le=1.0)
    margin: float = Field(0.01, ge=0.0)


class RuntimeConfig(_Strict):
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # CPU threads for torch (null: torch's default, one per core). Set 1 when several
    # jobs share the cores: oversubscribed threads make small models many times slower.
    threads: int | None = Field(None, ge=1)

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return device


class RunConfig(_Strict):
    name: str = "digits-demo"
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        # The name becomes a folder under runs/: no separators, no "..", no hidden names.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
            raise ValueError(
                "must be 1-100 letters, digits, '.', '_' or '-' and start with a letter or digit"
            )
        return name


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Read a YAML config (``None``: the defaults), apply ``--set`` overrides, validate.

    Raises:
        ConfigError: unreadable file, YAML syntax error (with line), unknown key (with the
            closest valid key), wrong type or out-of-range value.
    """
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = path.name
        if not path.exists():
            raise ConfigError(f"config file '{path}' does not exist; check the path")
        if path.is_dir():
            raise ConfigError(f"config '{path}' is a directory; give the path of a YAML file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config '{path}': {exc}") from None
        raw = _parse_yaml(text, where)
    apply_overrides(raw, overrides or [])
    return validate_config(raw, where)


def validate_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a plain dict into a :class:`RunConfig`, with one-line errors."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain_validation_error(exc, raw, where)) from None


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: YAML syntax error{line}: {problem}; fix the YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: the top level must be a mapping of keys (name:, data:, ...), "
            f"not a {type(data).__name__}"
        )
    return data


_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _parse_key(key: str) -> list[str | int]:
    """``distill.losses[0].temperature`` → ``['distill', 'losses', 0, 'temperature']``."""
    parts: list[str | int] = []
    for dotted in key.split("."):
        pos = 0
        if not dotted:
            raise ConfigError(f"--set {key}: empty part in the key; write it as a.b.c=value")
        while pos < len(dotted):
            m = _TOKEN.match(dotted, pos)
            if not m or (m.group(1) and pos > 0):
                raise ConfigError(
                    f"--set {key}: cannot read the key at '{dotted[pos:]}'; "
                    "write keys as a.b.c or a.list[0].c"
                )
            parts.append(m.group(1) if m.group(1) else int(m.group(2)))
            pos = m.end()
    return parts


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a raw config dict in place (values are YAML scalars).

    Example:
        >>> apply_overrides({}, ["distill.epochs=5"])
        {'distill': {'epochs': 5}}
    """
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(
                f"--set '{item}': expected KEY=VALUE, e.g. --set distill.epochs=5"
            )
        key, text = item.split("=", 1)
        key = key.strip()
        path = _parse_key(key)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot read the value '{text}' as YAML") from None
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    size = len(node) if isinstance(node, list) else 0
                    raise ConfigError(f"--set {key}: index [{part}] is out of range (list has {size})")
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {key}: '{part}' is not inside a mapping")
                if part not in node or node[part] is None:
                    node[part] = _default_container(path[: i + 1]) if isinstance(nxt, int) else {}
                node = node[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ConfigError(f"--set {key}: index [{last}] is out of range")
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: the parent of '{last}' is not a mapping")
    return raw


def _default_container(path: list[str | int]) -> list[Any]:
    """The default list at ``path`` as plain data, so ``losses[0].x=...`` edits the default."""
    obj: Any = RunConfig().model_dump(mode="json")
    for part in path:
        obj = obj[part]
    return obj if isinstance(obj, list) else []


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML text (round-trips through :func:`load_config`)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _explain_validation_error(exc: ValidationError, raw: dict[str, Any], where: str) -> str:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    dotted = _format_loc(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), list(model.model_fields)) if model else ""
        valid = f"; valid keys there: {', '.join(model.model_fields)}" if model else ""
        return f"{where}: unknown key '{dotted}'{hint}{valid}"
    value = _value_at(raw, loc)
    msg = err["msg"].removeprefix("Value error, ")
    shown = f" (got {value!r})" if value is not _MISSING else ""
    target = f"'{dotted}'" if dotted else "the config"
    return f"{where}: {target}: {msg}{shown}"


_MISSING = object()


def _format_loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _value_at(raw: Any, loc: list[Any]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node
