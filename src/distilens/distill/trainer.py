"""The training loop: explicit, top to bottom.

:func:`fit` prepares the run (the objectives' views, the state, a resumed checkpoint) and
then loops: :func:`train_epoch` (forward → weighted objectives (+ the model's own
regularisation) → backward → clip → step → schedule → zero_grad, per batch), a validation
pass, the best weights and early stopping (:class:`TrainState`), the checkpoint. The weights
of the best validation epoch (accuracy, then loss) are kept.

Data-parallel (inside an initialised ``torch.distributed`` group, e.g. under ``torchrun``):
every process draws the same shuffled order and trains on its share of each global batch
of ``batch_size``; gradients (and floating buffers such as BatchNorm running means) are
averaged over processes after each backward (:class:`distilens.distributed.GradientSync`),
epoch metrics are summed, and rank 0 validates and its numbers decide for all, so every
process takes the same decisions. Rank 0 alone writes checkpoints and TensorBoard events
and calls ``on_epoch``. Nothing waits for the device during an epoch: sums and non-finite
flags stay on the device and are read once, at its end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import Tensor, nn

from ..distributed import GradientSync, broadcast, is_main, reduce_epoch_metrics, world
from ..data.augment import Augment
from ..data.bundle import DataBundle, Split, count_batches, iterate_batches
from ..config import DistillConfig
from ..errors import DistilensError
from ..models.modes import eval_mode, train_mode
from ..progress import ProgressArg, Report, reporter
from ..runtime import amp_dtype, resolve_device
from .checkpoint import save_checkpoint
from .objectives import CE, Objective
from .state import FitResult, TrainState
from .step_plan import StepPlan
from .teacher_cache import SoftLabelCache
from .views import TrainingViews

__all__ = ["fit", "FitResult", "evaluate_split", "train_epoch", "TrainingDiverged"]


class TrainingDiverged(DistilensError, FloatingPointError):
    """A loss became NaN or infinite; the message names the epoch, the step and the terms."""


@torch.no_grad()
def evaluate_split(model: nn.Module, split: Split, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode (mode restored)."""
    device = next(model.parameters()).device
    correct, loss_sum = 0, 0.0
    with eval_mode(model):
        for x, y, _ in iterate_batches(split, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x).float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    n = max(1, len(split))
    return correct / n, loss_sum / n


#: ``fit``'s defaults are the CLI's ``distill`` section's (one set of defaults for both).
_CLI = DistillConfig()
_OPT = _CLI.optimizer


def fit(
    model: nn.Module, bundle: DataBundle, *, objectives: list[Objective] | None = None,
    teacher_cache: SoftLabelCache | None = None, epochs: int = _CLI.epochs, batch_size: int = _CLI.batch_size,
    optimizer: Literal["adamw", "sgd"] = _OPT.name, lr: float = _OPT.lr, weight_decay: float = _OPT.weight_decay,
    momentum: float = _OPT.momentum, warmup_epochs: float = _OPT.warmup_epochs, grad_clip: float | None = None,
    seed: int = 0, device: str | torch.device = "auto",
    precision: str = "auto", on_epoch: Callable[[dict[str, float]], None] | None = None,
    early_stopping: int | None = None, monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy",
    checkpoint_path: str | Path | None = None, resume: bool = False, tensorboard_dir: str | Path | None = None,
    schedule: Literal["cosine", "step"] = "cosine", milestones: Sequence[int] = (), gamma: float = 0.1,
    augment: Augment | None = None, online_teacher: nn.Module | None = None, progress: ProgressArg = None,
) -> FitResult:
    """Train ``model`` (in place, on ``device``; in eval mode at the end) on ``bundle.train`` with a weighted sum of objectives.

    Args:
        model: The network. A :class:`~distilens.models.capabilities.RegularisedModel` (e.g.
            ``soft_tree``) has its ``regularization()`` added to every step's loss.
        bundle: Data; ``train`` is fitted, ``val`` picks the best epoch.
        objectives: Loss terms (default ``[CE()]``); their own parameters train with the model's.
        teacher_cache: Teacher outputs of ``bundle.train``, built with ``**teacher_cache_options(objectives)``.
        epochs, batch_size: Passes over the data; samples per step (data-parallel: the global batch).
        optimizer, lr, weight_decay, momentum: ``adamw`` or ``sgd`` (Nesterov); the peak learning
            rate of the per-step warm-up + cosine schedule; decoupled decay (AdamW) or L2 (SGD).
        warmup_epochs: Linear warm-up length in epochs.
        grad_clip: Max global gradient norm, or ``None``.
        seed: Seeds the shuffling order (initialise the model's weights before calling).
        device, precision: ``auto``/``cpu``/``cuda[:N]``/``mps``; ``auto``/``fp32``/``bf16``/``fp16``
            (half precision on CUDA only, the loss terms in fp32).
        on_epoch: Called with each epoch's history row after its checkpoint (data-parallel: rank 0).
        early_stopping, monitor: Stop after this many epochs without improvement of ``monitor``
            (``val_accuracy``, higher is better, or ``val_loss``); ``None``: never.
        checkpoint_path, resume: Write a checkpoint there after every epoch (atomically); with
            ``resume``, continue from it if it exists (same settings; bit-identical on CPU).
        tensorboard_dir: Write the history's scalars there when ``tensorboard`` is installed.
        schedule, milestones, gamma: ``cosine`` (to 0 over the epochs) or ``step`` (×``gamma``
            after each milestone epoch), after the warm-up.
        augment: Augment the training images: epoch e's views depend on (seed, e, sample) alone
            (:mod:`distilens.distill.views`); with a cache of K stored views, epoch e trains on
            view (e − 1) mod K and its soft labels.
        online_teacher: The teacher labels each augmented batch in the step (eval mode, no
            gradients) instead of a cache (``distill.teacher_views: online``).
        progress: Steps of each epoch on a bar (``None``: when stderr is a terminal), or a
            ``(label, step, steps)`` callback (:mod:`distilens.progress`).

    Raises:
        TrainingDiverged: a loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> cache = SoftLabelCache.build(teacher, bundle.train)
        >>> fit(student, bundle, objectives=[KD(temperature=4.0), CE(weight=0.1)], teacher_cache=cache)
    """
    _check_fit_args(monitor, resume, checkpoint_path)
    dev = resolve_device(device) if isinstance(device, str) else device
    dtype = amp_dtype(precision, dev)
    objectives = [o.to(dev) for o in objectives or [CE()]]
    plan = StepPlan(model.to(dev), objectives, teacher_cache, bundle.train, dev, dtype, online_teacher=online_teacher)
    views = _training_views(augment, teacher_cache, online_teacher, bundle.train, seed, plan.uses_teacher)
    sync = GradientSync([model, *objectives])  # every process starts from rank 0's weights
    steps = count_batches(len(bundle.train), batch_size, sync.world.size)
    settings = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                    momentum=momentum, warmup_epochs=warmup_epochs, grad_clip=grad_clip, seed=seed, schedule=schedule,
                    milestones=list(milestones), gamma=gamma)
    state = _train_state(model, objectives, settings, steps, len(bundle.train), views, online_teacher is not None,
                         fp16=dtype is torch.float16, device=dev)
    if resume and Path(checkpoint_path).is_file():  # type: ignore[arg-type]
        state.resume(checkpoint_path)  # type: ignore[arg-type]
    with reporter(progress if sync.world.main else False, "fit") as report, _tensorboard(
            tensorboard_dir if sync.world.main else None) as writer:
        while state.epoch < epochs and not state.stopped_early:
            t0 = time.perf_counter()
            row = train_epoch(state, plan, sync, bundle.train, batch_size, grad_clip, checkpoint_path, views,
                              _epoch_report(report, state.epoch + 1, epochs))
            row.update(_validate(model, bundle.val, dev), time_s=time.perf_counter() - t0)
            state.end_epoch(row, monitor, early_stopping, epochs)
            _publish(row, state, checkpoint_path, writer, on_epoch if sync.world.main else None, sync.world.main)
    result = state.finish()
    model.eval()
    return result


def _publish(
    row: dict[str, float], state: TrainState, checkpoint_path: str | Path | None, writer: Any,
    on_epoch: Callable[[dict[str, float]], None] | None, main: bool,
) -> None:
    """The end of an epoch: the checkpoint (rank 0), TensorBoard's scalars, then ``on_epoch``."""
    if checkpoint_path is not None and main:
        save_checkpoint(checkpoint_path, state.state_dict())
    if writer is not None:
        _log_scalars(writer, row)
    if on_epoch is not None:
        on_epoch(row)


def _epoch_report(report: Report | None, epoch: int, epochs: int) -> Callable[[int, int], None] | None:
    """``on_step`` for :func:`train_epoch`: ``report("epoch e/E", step, steps)``."""
    return None if report is None else lambda step, steps: report(f"epoch {epoch}/{epochs}", step, steps)


def _check_fit_args(monitor: str, resume: bool, checkpoint_path: str | Path | None) -> None:
    if monitor not in ("val_accuracy", "val_loss"):
        raise ValueError(f"monitor must be 'val_accuracy' or 'val_loss', got {monitor!r}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")


def _train_state(
    model: nn.Module, objectives: list[Objective], settings: dict[str, Any], steps: int, n_train: int,
    views: TrainingViews | None, online: bool, *, fp16: bool, device: torch.device,
) -> TrainState:
    """A fresh :class:`TrainState` for ``settings`` (fit's optimiser and schedule arguments); its
    signature (what a checkpoint must match to be resumed) also names the data size, the
    objectives and the augmented views, and leaves the default cosine schedule's keys out so
    that older checkpoints still resume."""
    signature = {k: v for k, v in settings.items() if k not in ("schedule", "milestones", "gamma")}
    signature.update(n_train=n_train, objectives=[repr(o) for o in objectives])
    if settings["schedule"] != "cosine":
        signature.update(schedule=settings["schedule"], milestones=settings["milestones"], gamma=settings["gamma"])
    if views is not None:
        signature.update(augment=views.augment.to_config(),
                         views="stored" if views.stored is not None else "online" if online else "epoch")
    return TrainState.create(
        model, objectives, optimizer=settings["optimizer"], lr=settings["lr"], weight_decay=settings["weight_decay"],
        momentum=settings["momentum"], total_steps=settings["epochs"] * steps,
        warmup_steps=int(round(settings["warmup_epochs"] * steps)), seed=settings["seed"], fp16=fp16, device=device,
        signature=signature, schedule=settings["schedule"],
        milestone_steps=[int(m) * steps for m in settings["milestones"]], gamma=settings["gamma"],
    )


def _training_views(
    augment: Augment | None, cache: SoftLabelCache | None, online_teacher: nn.Module | None, split: Split, seed: int,
    uses_teacher: bool,
) -> TrainingViews | None:
    """The views epochs train on: fresh per epoch, a cache's stored ones, or none (no augmentation).

    Soft labels must be those of the view trained on: a plain cache (one row per image) with
    augmentation and an objective that reads the teacher is refused.
    """
    stored = cache if cache is not None and cache.augment is not None else None
    if augment is None or not augment.ops:
        if stored is not None:
            raise ValueError("the teacher cache holds stored views of an augmentation; pass augment= the same ops")
        if online_teacher is not None:
            raise ValueError("online_teacher labels augmented views; pass augment= (without augmentation use a cache)")
        return None
    if uses_teacher and stored is None and online_teacher is None:
        raise ValueError(
            "the teacher cache holds soft labels of the plain images, but augment= trains on augmented views; "
            "build it with augment= and views=K (stored views) or pass online_teacher="
        )
    if stored is not None:
        if online_teacher is not None:
            raise ValueError("pass a cache of stored views or an online teacher, not both")
        if stored.augment != augment.to_config():
            raise ValueError("the teacher cache's stored views were made with another augmentation than augment=")
    size = (int(split.inputs.shape[-2]), int(split.inputs.shape[-1]))
    return TrainingViews(augment, len(split), size, seed=seed, stored=stored)


def train_epoch(
    state: TrainState, plan: StepPlan, sync: GradientSync, split: Split, batch_size: int,
    grad_clip: float | None = None, checkpoint_path: str | Path | None = None, views: TrainingViews | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """One pass over ``split`` (this process's share of it), one optimisation step per batch.

    With ``views`` every batch is replaced by this epoch's augmented views of it, and the
    cache rows read are those of the epoch's stored view (where the views are stored).
    ``on_step(step, steps)`` is called after each step.

    Returns:
        The epoch's history row so far: epoch, lr, the mean loss and terms, train_accuracy.

    Raises:
        TrainingDiverged: a loss was non-finite in this epoch on some process (checked once,
            at its end; ``checkpoint_path`` is named as the last good one if it exists).
    """
    epoch, ranks, params = state.epoch + 1, sync.world, state.params
    steps = count_batches(len(split), batch_size, ranks.size)
    meter = _EpochMeter(plan.device)
    batches = iterate_batches(split, batch_size, shuffle=True, generator=state.generator, rank=ranks.rank,
                              world_size=ranks.size)
    if views is not None:
        views.start_epoch(epoch)
    with train_mode(state.model):
        for i, (x, y, idx) in enumerate(batches):
            x, y = x.to(plan.device, non_blocking=True), y.to(plan.device, non_blocking=True)
            rows = idx
            if views is not None:
                x, rows = views.apply(x, idx), views.rows(idx)
            logits, step_views = plan.forward(x, y, rows, epoch, state.epoch * steps + i)
            loss, terms = plan.loss(step_views)
            meter.add(i, loss, terms, logits, y)
            global_batch = min(batch_size, len(split) - i * batch_size)
            state.scaler.scale(sync.weighted(loss, y.shape[0], global_batch)).backward()
            sync.average()  # data-parallel: the global batch's mean gradient on every process
            if grad_clip is not None:
                state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(params, grad_clip)
            state.scaler.step(state.optimizer)
            state.scaler.update()
            state.scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(i + 1, steps)
    return meter.row(epoch, steps, state.optimizer.param_groups[0]["lr"], checkpoint_path)


class _EpochMeter:
    """An epoch's sums on the device, and its first non-finite step: no host sync until :meth:`row`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.correct = torch.zeros((), device=device)
        self.seen = 0
        self.first_bad = torch.full((), -1, device=device)  # index of the first step with a non-finite loss
        self.bad_terms: Tensor | None = None  # (1 + terms,) which values were non-finite at that step
        self.names: list[str] = []

    def add(self, i: int, loss: Tensor, terms: dict[str, Tensor], logits: Tensor, y: Tensor) -> None:
        values = torch.stack([loss.detach().float(), *(v.float() for v in terms.values())])
        bad_now = ~torch.isfinite(values)
        newly = bad_now[0] & (self.first_bad < 0)
        self.first_bad = torch.where(newly, torch.full_like(self.first_bad, i), self.first_bad)
        self.bad_terms = bad_now if self.bad_terms is None else torch.where(newly, bad_now, self.bad_terms)
        self.names = ["loss", *terms]
        b = y.shape[0]
        self.seen += b
        for name, value in {"loss": loss.detach(), **terms}.items():
            self.sums[name] = self.sums.get(name, torch.zeros((), device=self.device)) + value.float() * b
        self.correct += (logits.detach().argmax(1) == y).sum()

    def row(self, epoch: int, steps: int, lr: float, checkpoint_path: str | Path | None) -> dict[str, float]:
        """The epoch's means over all processes (the one device sync of the epoch), or TrainingDiverged."""
        seen, first_bad, bad_terms = self.seen, self.first_bad, self.bad_terms
        if world().size > 1:
            seen, first_bad, bad_terms = reduce_epoch_metrics(self.sums, self.correct, seen, first_bad, bad_terms)
        if int(first_bad) >= 0:
            assert bad_terms is not None
            names = [n for n, bad in zip(self.names, bad_terms.tolist()) if bad]
            kept = f"; the last good checkpoint is '{checkpoint_path}'" if checkpoint_path and Path(checkpoint_path).is_file() else ""
            raise TrainingDiverged(
                f"the training loss became non-finite in epoch {epoch}, step {int(first_bad) + 1} of {steps} "
                f"(terms: {', '.join(names)}){kept}; lower the learning rate, or check the data and the "
                "loss weights"
            )
        row: dict[str, float] = {"epoch": epoch, "lr": lr}
        row.update({name: float(v) / seen for name, v in self.sums.items()})
        row["train_accuracy"] = float(self.correct) / seen
        return row


def _validate(model: nn.Module, split: Split, device: torch.device) -> dict[str, float]:
    """Rank 0 validates (every rank holds the same weights) and its numbers decide for all."""
    val = torch.tensor(evaluate_split(model, split) if is_main() else (0.0, 0.0), dtype=torch.float64)
    accuracy, loss = broadcast(val.to(device)).tolist()
    return {"val_accuracy": accuracy, "val_loss": loss}


def _log_scalars(writer: Any, row: dict[str, float]) -> None:
    for name, value in row.items():
        if name != "epoch":
            writer.add_scalar(name, value, row["epoch"])


@contextlib.contextmanager
def _tensorboard(log_dir: str | Path | None) -> Iterator[Any]:
    """A SummaryWriter (closed on exit), or None when no directory is asked for or tensorboard is not installed."""
    if log_dir is None:
        yield None
        return
    if importlib.util.find_spec("tensorboard") is None:
        warnings.warn("tensorboard is not installed; skipping TensorBoard logging (pip install tensorboard)", stacklevel=4)
        yield None
        return
    from torch.utils.tensorboard import SummaryWriter  # a broken install raises: not our call to hide

    writer = SummaryWriter(str(log_dir))
    try:
        yield writer
    finally:
        writer.close()
