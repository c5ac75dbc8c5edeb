"""Prediction metrics (accuracy, agreement, predictive KL, calibration) and model cost."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .data.bundle import InputSpec, Split, iterate_batches
from .distill.functional import kl_divergence
from .modalities.base import example_inputs

__all__ = [
    "predict_logits",
    "accuracy",
    "agreement",
    "predictive_kl",
    "expected_calibration_error",
    "count_flops",
    "size_bytes",
    "measure_latency",
    "prediction_metrics",
    "cost_metrics",
]


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, batch_size: int = 512) -> Tensor:
    """(N, C) logits of ``model`` on ``split`` in eval mode, on the CPU (mode restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model(x.to(device)).float().cpu() for x, _, _ in iterate_batches(split, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of (N, C) logits against (N,) labels."""
    return float((logits.argmax(1) == targets).float().mean())


def agreement(logits: Tensor, teacher_logits: Tensor) -> float:
    """Fraction of samples where the top-1 class equals the teacher's."""
    return float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean())


def predictive_kl(teacher_logits: Tensor, logits: Tensor) -> float:
    """Mean KL(p_teacher ‖ p_model) at temperature 1, in nats."""
    return float(kl_divergence(teacher_logits, logits).mean())


def expected_calibration_error(logits: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): Σ_b |B_b|/N · |acc(B_b) − conf(B_b)| over equal-width confidence bins."""
    probs = logits.float().softmax(1)
    conf, pred = probs.max(1)
    correct = (pred == targets).float()
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 cannot occur.
    bins = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    ece = torch.zeros(())
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)


def prediction_metrics(logits: Tensor, targets: Tensor, teacher_logits: Tensor | None = None) -> dict[str, float]:
    """accuracy and ece, plus agreement and predictive_kl when teacher logits are given."""
    out = {"accuracy": accuracy(logits, targets), "ece": expected_calibration_error(logits, targets)}
    if teacher_logits is not None:
        out["agreement"] = agreement(logits, teacher_logits)
        out["predictive_kl"] = predictive_kl(teacher_logits, logits)
    return out


def size_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers (what the weights file holds, without headers)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return int(sum(t.numel() * t.element_size() for t in tensors))


@torch.no_grad()
def count_flops(model: nn.Module, spec: InputSpec) -> int:
    """FLOPs of one forward pass on one input, counted by ``torch.utils.flop_counter``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            model(example_inputs(spec, 1, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: nn.Module, spec: InputSpec, batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 30, warmup: int = 5
) -> dict[str, float]:
    """Median forward latency in milliseconds per batch size, eval mode, no autograd.

    Returns:
        ``{"batch1": ms, "batch64": ms}`` for the default ``batch_sizes``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        for bs in batch_sizes:
            x = example_inputs(spec, bs, device=device)
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append((time.perf_counter() - t0) * 1e3)
            out[f"batch{bs}"] = statistics.median(times)
    finally:
        model.train(was_training)
    return out


def cost_metrics(model: nn.Module, spec: InputSpec, *, latency: bool = True) -> dict[str, Any]:
    """params, size_bytes, flops and (optionally) latency_ms of a model."""
    out: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "size_bytes": size_bytes(model),
        "flops": count_flops(model, spec),
    }
    if latency:
        out["latency_ms"] = measure_latency(model, spec)
    return out

