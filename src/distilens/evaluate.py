"""Prediction metrics (accuracy, agreement, predictive KL, calibration) and model cost."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Mapping

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
    "measure_latencies",
    "latency_speedup",
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
def measure_latencies(
    models: Mapping[str, tuple[nn.Module, InputSpec]],
    batch_sizes: tuple[int, ...] = (1, 64),
    rounds: int = 40,
    warmup: int = 3,
    budget_s: float = 6.0,
) -> dict[str, Any]:
    """Forward latency of several models measured interleaved (A B A B …), median and interquartile range.

    One round runs every model once on its own example batch, in turn, so that a burst of
    load on a shared machine hits every model alike; ``rounds`` short repeats (fewer when one
    batch size's rounds pass ``budget_s`` seconds, never fewer than 5) give the median and the
    25th–75th percentiles. Eval mode, no autograd; each model's mode is restored.

    Args:
        models: Role → (model, the input spec it reads).
        batch_sizes: Batch sizes measured; keys ``batch{N}``.
        rounds: Interleaved rounds per batch size.
        warmup: Unmeasured rounds first.
        budget_s: Seconds one batch size may take before the rounds stop early.

    Returns:
        ``{"models": {role: {"latency_ms": {"batch1": ms, …}, "latency_iqr_ms": {"batch1": [q1, q3], …}}},
        "environment": {"threads", "load_average", "rounds", "order"}}``.

    Example:
        >>> lat = measure_latencies({"teacher": (teacher, spec), "student": (student, spec)})
        >>> lat["models"]["student"]["latency_ms"]["batch1"], lat["environment"]["load_average"]
    """
    load = _load_average()
    out: dict[str, dict[str, Any]] = {role: {"latency_ms": {}, "latency_iqr_ms": {}} for role in models}
    done: dict[str, int] = {}
    modes = {role: model.training for role, (model, _) in models.items()}
    try:
        for model, _ in models.values():
            model.eval()
        for bs in batch_sizes:
            inputs = {role: example_inputs(spec, bs, device=_device(model)) for role, (model, spec) in models.items()}
            times: dict[str, list[float]] = {role: [] for role in models}
            start = time.perf_counter()
            for r in range(warmup + rounds):
                for role, (model, _) in models.items():
                    ms = _time_forward(model, inputs[role])
                    if r >= warmup:
                        times[role].append(ms)
                if r >= warmup + 5 and time.perf_counter() - start > budget_s:
                    break
            for role, t in times.items():
                q1, med, q3 = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else (t[0], t[0], t[0])
                out[role]["latency_ms"][f"batch{bs}"] = med
                out[role]["latency_iqr_ms"][f"batch{bs}"] = [q1, q3]
            done[f"batch{bs}"] = len(next(iter(times.values())))
    finally:
        for role, (model, _) in models.items():
            model.train(modes[role])
    environment = {"threads": torch.get_num_threads(), "load_average": load, "rounds": done,
                   "order": "interleaved: " + " ".join(models)}
    return {"models": out, "environment": environment}


def measure_latency(
    model: nn.Module, spec: InputSpec, batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 30, warmup: int = 5
) -> dict[str, float]:
    """Median forward latency in milliseconds per batch size of one model (:func:`measure_latencies`).

    Returns:
        ``{"batch1": ms, "batch64": ms}`` for the default ``batch_sizes``.
    """
    lat = measure_latencies({"model": (model, spec)}, batch_sizes, rounds=repeats, warmup=warmup)
    return lat["models"]["model"]["latency_ms"]


def latency_speedup(teacher: Mapping[str, Any], student: Mapping[str, Any], key: str) -> float | None:
    """The teacher's median latency over the student's at ``key`` (``batch1``), or ``None`` on a noisy machine.

    ``None`` when the two interquartile ranges overlap: the difference is then within the
    machine's noise, and no speed-up is claimed. Blocks without ranges (older metrics.json)
    give the plain ratio.
    """
    t, s = teacher["latency_ms"][key], student["latency_ms"][key]
    t_iqr, s_iqr = (m.get("latency_iqr_ms", {}).get(key) for m in (teacher, student))
    if t_iqr and s_iqr and t_iqr[0] <= s_iqr[1] and s_iqr[0] <= t_iqr[1]:
        return None
    return round(t / s, 2) if s > 0 else None


def _time_forward(model: nn.Module, x: Tensor) -> float:
    """Milliseconds of one forward pass (device work included)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    t0 = time.perf_counter()
    model(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - t0) * 1e3


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (where the system has them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has no load average
        return None


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

