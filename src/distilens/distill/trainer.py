"""The training loop: explicit, top to bottom, one function.

forward → weighted objectives → backward → clip → step → schedule → zero_grad, then a
validation pass per epoch; the weights of the best validation epoch (accuracy, then loss)
are kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..data.bundle import DataBundle, Split, iterate_batches
from ..runtime import amp_dtype, autocast, resolve_device
from .objectives import CE, Objective, StepTensors, weighted_sum
from .teacher_cache import SoftLabelCache

__all__ = ["fit", "FitResult", "evaluate_split"]


@dataclass
class FitResult:
    """What :func:`fit` learned about the run (the model itself is updated in place).

    Attributes:
        history: One dict per epoch: epoch, lr, loss, each loss term, train/val accuracy, time.
        best_epoch: Epoch (1-based) whose weights the model holds at the end: the highest
            validation accuracy, ties broken by the lower validation loss.
        best_val_accuracy: Validation accuracy of that epoch.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")


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
) -> FitResult:
    """Train ``model`` on ``bundle.train`` with a weighted sum of objectives.

    Args:
        model: The network to train, updated in place (and moved to ``device``).
        bundle: Data; ``train`` is fitted, ``val`` picks the best epoch.
        objectives: Loss terms; default ``[CE()]`` (plain supervised training).
        teacher_cache: Teacher logits of ``bundle.train`` for objectives that need them.
        epochs: Passes over the training split.
        batch_size: Samples per step.
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
        on_epoch: Called with each epoch's history row (e.g. to drive a progress bar).

    Example:
        >>> cache = SoftLabelCache.build(teacher, bundle.train)
        >>> fit(student, bundle, objectives=[KD(temperature=4.0), CE(weight=0.1)], teacher_cache=cache)
    """
    objectives = list(objectives) if objectives else [CE()]
    if any(o.needs_teacher for o in objectives):
        if teacher_cache is None:
            raise ValueError("an objective needs the teacher's logits; pass teacher_cache=SoftLabelCache.build(...)")
        if len(teacher_cache) != len(bundle.train):
            raise ValueError(f"teacher_cache has {len(teacher_cache)} rows, the training split {len(bundle.train)}")
    dev = resolve_device(device) if isinstance(device, str) else device
    dtype = amp_dtype(precision, dev)
    model.to(dev)
    objectives = [o.to(dev) for o in objectives]
    if teacher_cache is not None:
        teacher_cache.to(dev)

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    steps_per_epoch = math.ceil(len(bundle.train) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = min(total_steps, int(round(warmup_epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(total_steps, warmup_steps))
    # fp16 needs loss scaling against underflow; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)
    generator = torch.Generator().manual_seed(seed)

    result = FitResult()
    best_state: dict[str, Tensor] | None = None
    best_key = (float("-inf"), float("-inf"))
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        sums: dict[str, Tensor] = {}
        correct = torch.zeros((), device=dev)
        seen = 0
        for x, y, idx in iterate_batches(bundle.train, batch_size, shuffle=True, generator=generator):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with autocast(dev, dtype):
                logits = model(x)
            teacher_logits = teacher_cache[idx] if teacher_cache is not None else None
            loss, terms = weighted_sum(objectives, StepTensors(logits, y, teacher_logits))
            scaler.scale(loss).backward()
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

        row: dict[str, float] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
        # One device sync per epoch: the sums stay on the device during the epoch.
        row.update({name: float(v) / seen for name, v in sums.items()})
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"the training loss became {row['loss']} in epoch {epoch}")
        row["train_accuracy"] = float(correct) / seen
        row["val_accuracy"], row["val_loss"] = evaluate_split(model, bundle.val)
        row["time_s"] = time.perf_counter() - t0
        result.history.append(row)
        # Small validation sets tie often; among equal accuracies the lower loss wins, so the
        # pick does not freeze on the first epoch that reached the plateau.
        key = (row["val_accuracy"], -row["val_loss"])
        if best_state is None or key > best_key:
            best_key = key
            result.best_epoch, result.best_val_accuracy = epoch, row["val_accuracy"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
