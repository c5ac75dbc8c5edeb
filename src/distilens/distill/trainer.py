"""The training loop: explicit, top to bottom, one function.

forward → weighted objectives (+ the model's own regularisation) → backward → clip → step
→ schedule → zero_grad, then a validation pass per epoch; the weights of the best
validation epoch (accuracy, then loss) are kept. Optional: early stopping, a per-epoch
checkpoint to resume from, TensorBoard scalars.

Data-parallel (inside an initialised ``torch.distributed`` group, e.g. under ``torchrun``):
every process draws the same shuffled order and trains on its share of each global batch
of ``batch_size``; gradients (and floating buffers such as BatchNorm running means) are
averaged over processes after each backward, epoch metrics are summed, and rank 0
validates and its numbers decide for all, so every process takes the same decisions.
Rank 0 alone writes checkpoints and TensorBoard events and calls ``on_epoch``.
"""

from __future__ import annotations

import importlib.util
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from .. import distributed as _dist
from ..data.bundle import DataBundle, Split, count_batches, iterate_batches
from ..errors import DistilensError
from ..runtime import amp_dtype, autocast, resolve_device
from .checkpoint import check_signature, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .objectives import CE, Objective, requirements, weighted_sum
from .step_views import check_cache, prepare_objectives, step_views, student_layer, feature_tap
from .teacher_cache import SoftLabelCache

__all__ = ["fit", "FitResult", "evaluate_split", "TrainingDiverged"]


class TrainingDiverged(DistilensError, FloatingPointError):
    """A loss became NaN or infinite; the message names the epoch, the step and the terms."""


@dataclass
class FitResult:
    """What :func:`fit` learned about the run (the model itself is updated in place).

    Attributes:
        history: One dict per epoch: epoch, lr, loss, each loss term, train/val accuracy, time.
        best_epoch: Epoch (1-based) whose weights the model holds at the end: the highest
            validation accuracy, ties broken by the lower validation loss.
        best_val_accuracy: Validation accuracy of that epoch.
        stopped_early: Early stopping ended the run before ``epochs``.
        resumed_from: Epoch of the checkpoint the run continued from (0: a fresh start).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    stopped_early: bool = False
    resumed_from: int = 0


def _warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def evaluate_split(model: nn.Module, split: Split, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``split``, in eval mode (mode restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        for x, y, _ in iterate_batches(split, batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x).float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    n = max(1, len(split))
    return correct / n, loss_sum / n


def fit(
    model: nn.Module,
    bundle: DataBundle,
    *,
    objectives: list[Objective] | None = None,
    teacher_cache: SoftLabelCache | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    warmup_epochs: float = 0.0,
    grad_clip: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    precision: str = "auto",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    early_stopping: int | None = None,
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy",
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    tensorboard_dir: str | Path | None = None,
) -> FitResult:
    """Train ``model`` on ``bundle.train`` with a weighted sum of objectives.

    Args:
        model: The network to train, updated in place (and moved to ``device``). A model
            with a ``regularization()`` method (e.g. ``soft_tree``) has its value added to
            the loss at every training step (logged as the ``regularization`` term).
        bundle: Data; ``train`` is fitted, ``val`` picks the best epoch.
        objectives: Loss terms; default ``[CE()]`` (plain supervised training). Their own
            parameters (e.g. a hint adapter) are optimised with the model's.
        teacher_cache: Teacher outputs of ``bundle.train`` for objectives that need them,
            built with ``**teacher_cache_options(objectives)``.
        epochs: Passes over the training split.
        batch_size: Samples per step (data-parallel: the global batch, shared by the processes).
        optimizer: ``adamw`` or ``sgd`` (Nesterov momentum).
        lr: Peak learning rate of the warm-up + cosine schedule (per step).
        weight_decay: Decoupled weight decay (AdamW) or L2 (SGD).
        momentum: SGD momentum.
        warmup_epochs: Linear warm-up length in epochs.
        grad_clip: Max global gradient norm, or ``None``.
        seed: Seeds the shuffling order (initialise the model's weights before calling).
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto``/``fp32``/``bf16``/``fp16``; half precision only on CUDA, with
            the loss terms computed in fp32.
        on_epoch: Called with each epoch's history row (after the checkpoint is written);
            data-parallel: on rank 0 only, which alone writes the checkpoint.
        early_stopping: Stop after this many epochs without improvement of ``monitor``
            (``None``: never).
        monitor: ``val_accuracy`` (higher is better) or ``val_loss`` (lower is better).
        checkpoint_path: Write a checkpoint there after every epoch (atomically).
        resume: Continue from ``checkpoint_path`` if it exists (same settings required);
            on CPU the result is bit-identical to an uninterrupted run.
        tensorboard_dir: Write the history's scalars there when ``tensorboard`` is installed
            (skipped with a warning otherwise).

    Raises:
        TrainingDiverged: a loss became NaN/inf (the last good checkpoint is kept).

    Example:
        >>> cache = SoftLabelCache.build(teacher, bundle.train)
        >>> fit(student, bundle, objectives=[KD(temperature=4.0), CE(weight=0.1)], teacher_cache=cache)
    """
    objectives = list(objectives) if objectives else [CE()]
    needs = [requirements(o) for o in objectives]
    all_needs = frozenset().union(*needs)
    check_cache(objectives, all_needs, teacher_cache, len(bundle.train))
    if monitor not in ("val_accuracy", "val_loss"):
        raise ValueError(f"monitor must be 'val_accuracy' or 'val_loss', got {monitor!r}")
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    dev = resolve_device(device) if isinstance(device, str) else device
    dtype = amp_dtype(precision, dev)
    model.to(dev)
    objectives = [o.to(dev) for o in objectives]
    if teacher_cache is not None:
        teacher_cache.to(dev)
    example = bundle.train.inputs[:2].to(dev)
    # Each objective's student layer, "auto" resolved once; the forward taps their union.
    layers = [student_layer(model, o, n, example) for o, n in zip(objectives, needs)]
    tap_layers = sorted({name for name in layers if name is not None})
    prepare_objectives(model, objectives, needs, layers, teacher_cache, example, bundle.train.targets[:2].to(dev), dtype, dev)
    regularization = getattr(model, "regularization", None)
    world = _dist.world()
    # Every process starts from rank 0's weights (objectives' own ones too), as DDP does.
    for module in (model, *objectives):
        _dist.broadcast_module(module)
    buffers = [b for m in (model, *objectives) for b in m.buffers()]

    params = [p for p in model.parameters() if p.requires_grad]
    params += [p for o in objectives for p in o.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    n_train = len(bundle.train)
    steps_per_epoch = count_batches(n_train, batch_size, world.size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = min(total_steps, int(round(warmup_epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(total_steps, warmup_steps))
    # fp16 needs loss scaling against underflow; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)
    generator = torch.Generator().manual_seed(seed)

    result = FitResult()
    best_state: dict[str, Tensor] | None = None
    best_key = (float("-inf"), float("-inf"))
    watched, stale = float("-inf"), 0  # early stopping: best monitored value (as "higher is better")
    signature = {
        "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay,
        "momentum": momentum, "warmup_epochs": warmup_epochs, "grad_clip": grad_clip, "seed": seed,
        "n_train": len(bundle.train), "objectives": [repr(o) for o in objectives],
    }
    start = 1
    if resume and Path(checkpoint_path).is_file():  # type: ignore[arg-type]
        ck = load_checkpoint(checkpoint_path)  # type: ignore[arg-type]
        check_signature(checkpoint_path, ck["signature"], signature)  # type: ignore[arg-type]
        model.load_state_dict(ck["model"])
        for o, state in zip(objectives, ck["objectives"]):
            o.load_state_dict(state)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        generator.set_state(ck["generator"])
        set_rng_state(ck["rng"])
        best_state, best_key = ck["best_state"], tuple(ck["best_key"])
        result.history, result.best_epoch, result.best_val_accuracy = ck["history"], ck["best_epoch"], ck["best_val_accuracy"]
        watched, stale, result.stopped_early = ck["watched"], ck["stale"], ck["stopped_early"]
        start = result.resumed_from = ck["epoch"] + 1
    writer = _tensorboard(tensorboard_dir) if world.main else None
    try:
        for epoch in range(start, epochs + 1):
            if result.stopped_early:
                break
            t0 = time.perf_counter()
            model.train()
            sums: dict[str, Tensor] = {}
            correct = torch.zeros((), device=dev)
            seen = 0
            # Non-finite losses are recorded on the device (no per-step sync) and checked once
            # per epoch: the first bad step and which terms were bad there.
            first_bad = torch.full((), -1, device=dev)
            bad_terms: Tensor | None = None
            batches = iterate_batches(
                bundle.train, batch_size, shuffle=True, generator=generator, rank=world.rank, world_size=world.size
            )
            for i, (x, y, idx) in enumerate(batches):
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                if "input_gradients" in all_needs:
                    x.requires_grad_(True)  # objectives differentiate the scores w.r.t. the inputs
                with autocast(dev, dtype), feature_tap(model, tap_layers) as tap:
                    logits = model(x)
                step = (epoch - 1) * steps_per_epoch + i
                views = step_views(objectives, needs, layers, logits, y, x, idx, tap, teacher_cache, model, epoch, step)
                loss, terms = weighted_sum(objectives, views)
                if callable(regularization):
                    reg = regularization()
                    loss = loss + reg
                    terms["regularization"] = reg.detach()
                values = torch.stack([loss.detach().float(), *(v.float() for v in terms.values())])
                bad_now = ~torch.isfinite(values)
                newly = bad_now[0] & (first_bad < 0)
                first_bad = torch.where(newly, torch.full_like(first_bad, i), first_bad)
                bad_terms = bad_now if bad_terms is None else torch.where(newly, bad_now, bad_terms)

                if world.size == 1:
                    scaler.scale(loss).backward()
                else:
                    # Weighted so that averaging over processes gives the global batch's mean
                    # gradient, also when the shares of a last, short batch differ in size.
                    share = y.shape[0] * world.size / min(batch_size, n_train - i * batch_size)
                    scaler.scale(loss * share).backward()
                    _dist.sync_gradients(params, buffers)
                if grad_clip is not None:
                    scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                    nn.utils.clip_grad_norm_(params, grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                opt.zero_grad(set_to_none=True)

                b = y.shape[0]
                seen += b
                for name, value in {"loss": loss.detach(), **terms}.items():
                    sums[name] = sums.get(name, torch.zeros((), device=dev)) + value.float() * b
                correct += (logits.detach().argmax(1) == y).sum()

            # One device sync per epoch: the sums and flags stay on the device during the epoch.
            if world.size > 1:
                seen, first_bad, bad_terms = _dist.reduce_epoch_metrics(sums, correct, seen, first_bad, bad_terms)
            if int(first_bad) >= 0:
                assert bad_terms is not None
                names = [n for n, bad in zip(["loss", *terms], bad_terms.tolist()) if bad]
                kept = f"; the last good checkpoint is '{checkpoint_path}'" if checkpoint_path and Path(checkpoint_path).is_file() else ""
                raise TrainingDiverged(
                    f"the training loss became non-finite in epoch {epoch}, step {int(first_bad) + 1} of "
                    f"{steps_per_epoch} (terms: {', '.join(names)}){kept}; lower the learning rate, "
                    f"or check the data and the loss weights"
                )
            row: dict[str, float] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
            row.update({name: float(v) / seen for name, v in sums.items()})
            row["train_accuracy"] = float(correct) / seen
            # Rank 0 validates (every rank holds the same weights) and its numbers decide for all.
            val = torch.tensor(evaluate_split(model, bundle.val) if world.main else (0.0, 0.0), dtype=torch.float64)
            val = _dist.broadcast(val.to(dev))
            row["val_accuracy"], row["val_loss"] = val.tolist()
            row["time_s"] = time.perf_counter() - t0
            result.history.append(row)
            # Small validation sets tie often; among equal accuracies the lower loss wins, so the
            # pick does not freeze on the first epoch that reached the plateau.
            key = (row["val_accuracy"], -row["val_loss"])
            if best_state is None or key > best_key:
                best_key = key
                result.best_epoch, result.best_val_accuracy = epoch, row["val_accuracy"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            value = row["val_accuracy"] if monitor == "val_accuracy" else -row["val_loss"]
            watched, stale = (value, 0) if value > watched else (watched, stale + 1)
            result.stopped_early = early_stopping is not None and stale >= early_stopping and epoch < epochs
            if checkpoint_path is not None and world.main:
                save_checkpoint(checkpoint_path, {
                    "signature": signature, "epoch": epoch, "model": model.state_dict(),
                    "objectives": [o.state_dict() for o in objectives], "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "generator": generator.get_state(),
                    "rng": rng_state(), "best_state": best_state, "best_key": list(best_key), "history": result.history,
                    "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
                    "watched": watched, "stale": stale, "stopped_early": result.stopped_early,
                })
            if writer is not None:
                for name, v in row.items():
                    if name != "epoch":
                        writer.add_scalar(name, v, epoch)
            if on_epoch is not None and world.main:
                on_epoch(row)
    finally:
        if writer is not None:
            writer.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def _tensorboard(log_dir: str | Path | None) -> Any:
    """A SummaryWriter, or None when no directory is asked for or tensorboard is not installed."""
    if log_dir is None:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        warnings.warn("tensorboard is not installed; skipping TensorBoard logging (pip install tensorboard)", stacklevel=3)
        return None
    from torch.utils.tensorboard import SummaryWriter  # a broken install raises: not our call to hide

    return SummaryWriter(str(log_dir))
