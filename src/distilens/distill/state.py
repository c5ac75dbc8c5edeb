"""Everything a training run needs to continue bit-identically, in one object whose ``state_dict()`` is the checkpoint.

:class:`TrainState` holds the model, the objectives (their own parameters, e.g. a hint
adapter), the optimiser, the learning-rate schedule, the loss scaler, the shuffling
generator, the epoch, the history, the best weights so far and the early-stopping counters.
``state_dict()`` adds the global RNG states and is what :func:`distill.checkpoint.save_checkpoint`
writes; ``load_state_dict()`` restores all of it, so a resumed run continues exactly where
the checkpoint was taken.

Checkpoint keys (format ``distilens-checkpoint/1``): ``signature``, ``epoch``, ``model``,
``objectives``, ``optimizer``, ``scheduler``, ``scaler``, ``generator``, ``rng``,
``best_state``, ``best_key``, ``history``, ``best_epoch``, ``best_val_accuracy``,
``watched``, ``stale``, ``stopped_early``.

Example:
    >>> state = TrainState.create(model, objectives, optimizer="adamw", lr=3e-3, total_steps=100, seed=0)
    >>> save_checkpoint("ck.pt", state.state_dict())
    >>> state.load_state_dict(load_checkpoint("ck.pt"))
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import Tensor, nn

from .checkpoint import check_signature, load_checkpoint, rng_state, set_rng_state
from .objectives import Objective

__all__ = ["TrainState", "FitResult", "warmup_cosine", "warmup_step"]


@dataclass
class FitResult:
    """What :func:`fit` learned about the run (the model itself is updated in place).

    Attributes:
        history: One dict per epoch: epoch, lr, loss, each loss term, train/val accuracy, time.
        best_epoch: Epoch (1-based) whose weights the model holds at the end: the highest
            validation accuracy, ties broken by the lower validation loss.
        best_val_accuracy: Validation accuracy of that epoch.
        stopped_early: Early stopping ended the run before ``epochs``.
        resumed_from: The epoch the run continued with after a checkpoint (0: a fresh start).
        head_fit: For a frozen-encoder teacher whose linear head was fitted to convergence
            (:func:`~distilens.distill.teacher_fit.fit_teacher`): the chosen weight decay,
            convergence and the validation path over the decay grid; else ``None``.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    stopped_early: bool = False
    resumed_from: int = 0
    head_fit: dict[str, Any] | None = None


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The LambdaLR factor: linear warm-up over ``warmup_steps``, then a cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_step(milestone_steps: Sequence[int], gamma: float, warmup_steps: int) -> Callable[[int], float]:
    """The LambdaLR factor: linear warm-up, then ×``gamma`` after each of ``milestone_steps`` (a step schedule).

    Example:
        >>> f = warmup_step([10, 20], 0.1, 0)
        >>> [round(f(s), 4) for s in (0, 9, 10, 19, 20)]
        [1.0, 1.0, 0.1, 0.1, 0.01]
    """
    bounds = sorted(int(m) for m in milestone_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return float(gamma) ** bisect.bisect_right(bounds, step)

    return factor


@dataclass
class TrainState:
    """The state of one training run; ``state_dict()`` is its checkpoint.

    Attributes:
        model, objectives, optimizer, scheduler, scaler, generator: What training updates.
        signature: The run's settings; resuming with other settings is refused.
        epoch: Epochs completed.
        history: One row per completed epoch.
        best_state: The model's weights at the best epoch so far (``None`` before the first).
        best_key: (val_accuracy, −val_loss) of that epoch; higher is better.
        best_epoch, best_val_accuracy: The best epoch and its validation accuracy.
        watched: Best monitored value so far, as "higher is better" (early stopping).
        stale: Epochs since ``watched`` last improved.
        stopped_early: Early stopping has ended the run.
        resumed_from: The epoch the run continued with (0: a fresh start); not saved.
    """

    model: nn.Module
    objectives: list[Objective]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    signature: dict[str, Any]
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Tensor] | None = None
    best_key: tuple[float, float] = (float("-inf"), float("-inf"))
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    watched: float = float("-inf")
    stale: int = 0
    stopped_early: bool = False
    resumed_from: int = 0

    @classmethod
    def create(
        cls, model: nn.Module, objectives: list[Objective], *, optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 3e-3, weight_decay: float = 1e-4, momentum: float = 0.9, total_steps: int, warmup_steps: int = 0,
        seed: int = 0, fp16: bool = False, device: torch.device | None = None, signature: dict[str, Any] | None = None,
        schedule: Literal["cosine", "step"] = "cosine", milestone_steps: Sequence[int] = (), gamma: float = 0.1,
    ) -> "TrainState":
        """A fresh state: the optimiser over the trainable parameters of the model and the objectives.

        Args:
            optimizer: ``adamw`` (decoupled weight decay) or ``sgd`` (Nesterov momentum, L2).
            total_steps, warmup_steps: Of the warm-up + cosine schedule (per step).
            schedule, milestone_steps, gamma: ``cosine`` (decay to 0 at ``total_steps``) or
                ``step`` (×``gamma`` from each of ``milestone_steps`` on), after the warm-up.
            seed: Seeds the shuffling generator.
            fp16: Scale the loss against fp16 underflow (bf16 has fp32's range and needs none).
            device: Where the loss scaler works (default: the CPU).
        """
        params = [p for m in (model, *objectives) for p in m.parameters() if p.requires_grad]
        if optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        elif optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
        else:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        warmup = min(total_steps, warmup_steps)
        if schedule == "cosine":
            factor = warmup_cosine(total_steps, warmup)
        elif schedule == "step":
            factor = warmup_step(milestone_steps, gamma, warmup)
        else:
            raise ValueError(f"schedule must be 'cosine' or 'step', got {schedule!r}")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        scaler = torch.amp.GradScaler((device or torch.device("cpu")).type, enabled=fp16)
        return cls(model, list(objectives), opt, sched, scaler, torch.Generator().manual_seed(seed), dict(signature or {}))

    @property
    def params(self) -> list[Tensor]:
        """The parameters the optimiser updates (the model's, then the objectives')."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: every field but ``resumed_from``, plus the global RNG states now."""
        return {
            "signature": self.signature, "epoch": self.epoch, "model": self.model.state_dict(),
            "objectives": [o.state_dict() for o in self.objectives], "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(), "rng": rng_state(), "best_state": self.best_state,
            "best_key": list(self.best_key), "history": self.history, "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy, "watched": self.watched, "stale": self.stale,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the global RNG states too)."""
        self.model.load_state_dict(state["model"])
        for obj, obj_state in zip(self.objectives, state["objectives"]):
            obj.load_state_dict(obj_state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        self.signature, self.epoch, self.history = state["signature"], state["epoch"], state["history"]
        self.best_state, self.best_key = state["best_state"], tuple(state["best_key"])  # type: ignore[assignment]
        self.best_epoch, self.best_val_accuracy = state["best_epoch"], state["best_val_accuracy"]
        self.watched, self.stale, self.stopped_early = state["watched"], state["stale"], state["stopped_early"]

    def resume(self, path: str | Path) -> None:
        """Continue from the checkpoint at ``path`` (or its intact predecessor), written with the same settings.

        Raises:
            DistilensError: no intact checkpoint, or one written with other settings.
        """
        state = load_checkpoint(path)
        check_signature(path, state["signature"], self.signature)
        self.load_state_dict(state)
        self.resumed_from = self.epoch + 1

    def end_epoch(self, row: dict[str, float], monitor: Literal["val_accuracy", "val_loss"], patience: int | None,
                  epochs: int) -> None:
        """Record a finished epoch: its history row, the best weights, the early-stopping counters."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        # Small validation sets tie often; among equal accuracies the lower loss wins, so the
        # pick does not freeze on the first epoch that reached the plateau.
        key = (row["val_accuracy"], -row["val_loss"])
        if self.best_state is None or key > self.best_key:
            self.best_key, self.best_epoch, self.best_val_accuracy = key, self.epoch, row["val_accuracy"]
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        value = row["val_accuracy"] if monitor == "val_accuracy" else -row["val_loss"]
        self.watched, self.stale = (value, 0) if value > self.watched else (self.watched, self.stale + 1)
        self.stopped_early = patience is not None and self.stale >= patience and self.epoch < epochs

    def finish(self) -> FitResult:
        """Load the best epoch's weights into the model and say what the run learned."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return FitResult(self.history, self.best_epoch, self.best_val_accuracy, self.stopped_early, self.resumed_from)
