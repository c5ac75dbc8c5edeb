"""The run config's typed models: every section, its defaults and its checks.

Every key has a default, so an empty config is the digits demo. Reading a file, ``--set``
overrides and the wording of errors are :mod:`.files`.

Example:
    >>> cfg = RunConfig.model_validate({"distill": {"epochs": 5}})
    >>> cfg.distill.epochs, cfg.student.arch
    (5, 'cnn')
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..limits import MAX_IMAGE_PIXELS

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
    "StoredViews",
    "TransferConfig",
    "ExplainConfig",
    "ReportConfig",
    "RuntimeConfig",
    "default_args",
    "DEFAULT_MEMORY_BUDGET",
]


class _Strict(BaseModel):
    # allow_inf_nan=False: .inf / .nan are refused in every float field (lr, weights, fractions).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
    num_workers: int | None = Field(None, ge=0, le=256)  # lazy decoding processes; null: min(4, CPUs - 1)
    max_memory_bytes: int | None = Field(None, ge=1)  # null: 2 GiB
    # The split (and a procedurally drawn built-in set) follows this seed instead of the run's:
    # `run --seeds --same-teacher` keeps the teacher's split for every seed (null: the run's seed).
    split_seed: int | None = Field(None, ge=0)

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
    # Given splits. csv sources: the column that says each row's split (train, val or test),
    # or a separate file of test rows (csv:PATH). Given a test split (these, an image folder's
    # test/, a built-in's official one), validation is val_fraction of the training part.
    split_column: str | None = None
    test_source: str | None = None
    # builtin:fashion_mnist: the folder of its four IDX files (null: $DISTILENS_FASHION_MNIST,
    # else /usr/share/datasets/fashion-mnist).
    root: str | None = None
    # Images: seeded augmentation of the training split, a list of {name: crop|hflip|erase, ...}
    # (data/augment.py); every model trained on the training split sees it, validation and test never.
    augment: list[dict[str, Any]] | None = None

    @field_validator("augment")
    @classmethod
    def _none_when_empty(cls, augment: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return augment or None  # the ops and options are checked by data.load_data (parse_augment)

    @field_validator("test_source")
    @classmethod
    def _csv_test_source(cls, source: str | None) -> str | None:
        if source is not None and not source.startswith("csv:"):
            raise ValueError("must be csv:PATH, a file of test rows with the training file's columns")
        return source

    @model_validator(mode="after")
    def _one_way_to_split(self) -> "DataConfig":
        if self.split_column is not None and self.test_source is not None:
            raise ValueError("data.split_column and data.test_source both give the test split; set one of them")
        if (self.split_column is not None or self.test_source is not None) and not self.source.startswith("csv:"):
            key = "split_column" if self.split_column is not None else "test_source"
            raise ValueError(f"data.{key} applies to csv sources; {self.source} brings its own splits (image folders: "
                             "train/, val/, test/ sub-folders)")
        return self

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must be below 0.9 so that data is left to train on"
            )
        return self


Schedule = Literal["cosine", "step"]


def _check_schedule(schedule: str, milestones: list[int], epochs: int, where: str) -> None:
    """``step`` needs increasing milestones within the epochs; ``cosine`` takes none."""
    if schedule == "cosine" and milestones:
        raise ValueError(f"{where}.milestones apply to schedule: step (the cosine schedule has none); "
                         f"set {where}.schedule: step or remove them")
    if schedule == "step":
        if not milestones:
            raise ValueError(f"{where}.schedule: step needs {where}.milestones, the epochs after which the "
                             "learning rate is multiplied by gamma (e.g. [150, 180, 210])")
        if any(b <= a for a, b in zip(milestones, milestones[1:])) or milestones[0] < 1 or milestones[-1] >= epochs:
            raise ValueError(f"{where}.milestones must increase and lie between 1 and the epochs - 1 ({epochs - 1}), "
                             f"not {milestones}")


class TrainConfig(_Strict):
    # Defaults measured on digits (BENCHMARKS.md): a teacher trained at lr 1e-3 for 15
    # epochs is less over-confident than one trained hotter or longer, and distils better.
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # sgd (Nesterov)
    warmup_epochs: float = Field(0.0, ge=0.0)
    # cosine: decay to 0 over the epochs; step: lr × gamma after each milestone epoch.
    schedule: Schedule = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)  # ε of the teacher's cross-entropy

    @model_validator(mode="after")
    def _schedule(self) -> "TrainConfig":
        _check_schedule(self.schedule, self.milestones, self.epochs, "teacher.train")
        return self


# The args an architecture gets when the config names it without args, by role: a teacher
# of the zoo's teacher size and a student of its student size (the sizes the zoo's docstrings
# give), so that `teacher.arch=mlp student.arch=mlp` distils something bigger into something
# smaller. An architecture not listed gets its own defaults (never another arch's args).
DEFAULT_ARGS: dict[str, dict[str, dict[str, Any]]] = {
    "teacher": {"cnn": {"width": 64}, "mlp": {"hidden": [256, 256]}, "resnet": {"depth": 20, "width": 16},
                "mobilenet": {"width": 1.0}},
    "student": {"cnn": {"width": 8}, "mlp": {"hidden": [32]}, "resnet": {"depth": 8, "width": 8},
                "mobilenet": {"width": 0.25}},
}


def default_args(role: str, arch: str) -> dict[str, Any]:
    """The args of ``arch`` as ``role`` when the config gives none (a copy)."""
    return copy.deepcopy(DEFAULT_ARGS[role].get(arch, {}))


class TeacherConfig(_Strict):
    arch: str = "cnn"
    args: dict[str, Any] = Field(default_factory=lambda data: default_args("teacher", data.get("arch", "cnn")))
    weights: str | None = None
    # TorchScript archives carry code: loading one needs this explicit opt-in.
    trust_torchscript: bool = False
    train: TrainConfig = Field(default_factory=TrainConfig)


class StudentConfig(_Strict):
    arch: str = "cnn"
    args: dict[str, Any] = Field(default_factory=lambda data: default_args("student", data.get("arch", "cnn")))
    # Text: start the student's token embeddings from the teacher's input embeddings (piece
    # means + PCA for a word vocabulary, the teacher's rows for its own ids; models/text_init.py);
    # teacher_layers: the student is the teacher's architecture with fewer layers, started from
    # the trained teacher's (DistilBERT-style; models/layer_init.py).
    init: Literal["random", "teacher_embeddings", "teacher_layers"] = "random"


class OptimizerConfig(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    # The small student needs a hot learning rate: at 1e-3 it is under-trained in 30 epochs
    # and KD falls below the label-only baseline (BENCHMARKS.md).
    lr: float = Field(1e-2, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    # cosine: decay to 0 over distill.epochs; step: lr × gamma after each milestone epoch.
    schedule: Schedule = "cosine"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class LossConfig(BaseModel):
    """One term of the distillation objective: a registered loss name, its weight, its options."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

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


class StoredViews(_Strict):
    """``distill.teacher_views: {stored: K}``: K augmented views per image, labelled once (FKD)."""

    stored: int = Field(ge=1, le=1000)


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
    # With data.augment: the teacher's soft labels of the view the student sees. online: the
    # teacher runs on every augmented batch; {stored: K}: K views per image drawn once, their
    # parameters and soft labels in the cache, epoch e uses view e mod K (FKD, Shen & Xing
    # 2022); null: {stored: min(4, epochs)}.
    teacher_views: Literal["online"] | StoredViews | None = None

    @field_validator("teacher_views", mode="before")
    @classmethod
    def _online_or_stored(cls, views: Any) -> Any:
        if views is None or views == "online":
            return views
        if isinstance(views, dict) and set(views) == {"stored"}:
            k = views["stored"]
            if isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 1000:
                return views
        if isinstance(views, StoredViews):
            return views
        raise ValueError("must be online or {stored: K} with K from 1 to 1000 (views per training image)")

    @model_validator(mode="after")
    def _schedule(self) -> "DistillConfig":
        _check_schedule(self.optimizer.schedule, self.optimizer.milestones, self.epochs, "distill.optimizer")
        return self

    def stored_views(self, augmenting: bool) -> int | None:
        """K of the stored views when augmenting without ``online`` (``None``: online, or no augmentation)."""
        if not augmenting or self.teacher_views == "online":
            return None
        return self.teacher_views.stored if isinstance(self.teacher_views, StoredViews) else min(4, self.epochs)

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
    steps: int = Field(16, ge=2, le=1000)  # deletion/insertion steps
    sanity: bool = True  # cascading randomisation check (Adebayo et al. 2018), first method
    sanity_samples: int = Field(16, ge=1)
    sanity_layers: int | None = Field(None, ge=1)  # randomise at most this many steps (null: all; a repeated block is one)
    # Reference points explained with the same methods (issue 15): teacher_reseed, a second teacher
    # trained here with another seed (the ceiling); init, the student at its initial weights (the floor).
    references: list[Literal["teacher_reseed", "init"]] = Field(default_factory=list)
    reference_teacher: str | None = None  # weights of the second teacher when this run does not train its teacher


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
    threads: int | None = Field(None, ge=1, le=4096)

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return device


class RunConfig(_Strict):
    name: str = "digits-demo"  # load_config names a run after its config file and data when this is not set
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @model_validator(mode="after")
    def _views_need_augmentation(self) -> "RunConfig":
        if self.distill.teacher_views is not None and not self.data.augment:
            raise ValueError("distill.teacher_views applies with data.augment; without augmentation the teacher's soft "
                             "labels are computed once (remove distill.teacher_views or set data.augment)")
        return self

    @model_validator(mode="after")
    def _layers_from_the_same_architecture(self) -> "RunConfig":
        if self.student.init == "teacher_layers" and self.student.arch != self.teacher.arch:
            raise ValueError(
                "student.init teacher_layers starts the student from the teacher's layers, so student.arch must be "
                f"teacher.arch ('{self.teacher.arch}', not '{self.student.arch}') with fewer layers in student.args"
            )
        return self

    @model_validator(mode="after")
    def _images_fit_the_budget(self) -> "RunConfig":
        # Checked here, before any data is read: a huge data.image_size would exhaust memory in
        # the first batch (too small a size for the models is found by their forward check).
        if self.data.image_size is None:
            return self
        h, w = self.data.image_size
        if h < 1 or w < 1:
            raise ValueError(f"data.image_size {[h, w]}: both sides must be at least 1 pixel")
        if h * w > MAX_IMAGE_PIXELS:
            raise ValueError(f"data.image_size {[h, w]} is {h * w:,} pixels per image, over the limit of "
                             f"{MAX_IMAGE_PIXELS:,}; choose a smaller data.image_size")
        batch = max(self.teacher.train.batch_size, self.distill.batch_size)
        c = self.data.channels or 1
        need = batch * c * h * w * 4
        budget = self.data.max_memory_bytes or DEFAULT_MEMORY_BUDGET
        if need > budget:
            raise ValueError(
                f"data.image_size {[h, w]}: one batch of {batch} images of {c} × {h} × {w} takes {_gb(need)} as float32, "
                f"over the memory budget of {_gb(budget)} (data.max_memory_bytes); choose a smaller data.image_size "
                "or batch_size"
            )
        return self

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        # The name becomes a folder under runs/: no separators, no "..", no hidden names.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
            raise ValueError(
                "must be 1-100 letters, digits, '.', '_' or '-' and start with a letter or digit"
            )
        return name


#: The in-memory budget of image data when data.max_memory_bytes is null (the same 2 GiB as
#: ``distilens.data.imagefolder.DEFAULT_MAX_BYTES``; a test keeps the two equal).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"
