"""Every distillation loss on CUDA in fp32/bf16/fp16, with fp32 and fp16+top-k caches; resume.

For each precision × cache dtype: train a student with all registered objectives for 3
epochs, then crash it after epoch 2 and resume from the checkpoint; print finiteness, time
per epoch, the loss terms, the largest weight difference between the straight and the
resumed run, and whether TensorBoard wrote events. Exits 1 on a non-finite loss.

    python benchmarks/gpu_losses_check.py
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from distilens.data import load_dataset
from distilens.distill import (CE, DKD, KD, AttentionTransfer, GradCAMAlign, Hint, InputGradientAlign, SoftLabelCache,
                               evaluate_split, fit, teacher_cache_options)
from distilens.models import build_model


class _Crash(Exception):
    pass


def _objectives() -> list:
    return [KD(), CE(weight=0.1), DKD(warmup_epochs=1), Hint(), AttentionTransfer(), GradCAMAlign(every=2), InputGradientAlign()]


def _crash_after_epoch_2(row: dict) -> None:
    if row["epoch"] == 2:
        raise _Crash


def main() -> int:
    print(torch.__version__, torch.cuda.get_device_name(0))
    bundle = load_dataset("builtin:digits", seed=0)
    failures = []
    torch.manual_seed(0)
    teacher = build_model("cnn", bundle.spec, width=16)
    fit(teacher, bundle, epochs=3, device="cuda", precision="bf16")
    print("teacher (accuracy, loss):", evaluate_split(teacher, bundle.test))
    for precision in ("fp32", "bf16", "fp16"):
        for dtype in ("fp32", "fp16"):
            cache = SoftLabelCache.build(teacher, bundle.train, dtype=dtype, top_k=5 if dtype == "fp16" else None,
                                         **teacher_cache_options(_objectives()))
            tmp = Path(tempfile.mkdtemp())
            kw = dict(objectives=_objectives(), teacher_cache=cache, epochs=3, device="cuda", precision=precision, seed=0)
            torch.manual_seed(1)
            straight = build_model("cnn", bundle.spec, width=8)
            t0 = time.perf_counter()
            result = fit(straight, bundle, **kw)
            per_epoch = (time.perf_counter() - t0) / 3
            torch.manual_seed(1)
            crashed = build_model("cnn", bundle.spec, width=8)
            try:
                fit(crashed, bundle, checkpoint_path=tmp / "c.pt", on_epoch=_crash_after_epoch_2, tensorboard_dir=tmp / "tb", **kw)
            except _Crash:
                pass
            torch.manual_seed(1)
            resumed = build_model("cnn", bundle.spec, width=8)
            fit(resumed, bundle, checkpoint_path=tmp / "c.pt", resume=True, **kw)
            a, b = straight.state_dict(), resumed.state_dict()
            diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
            row = result.history[-1]
            finite = all(math.isfinite(float(v)) for v in row.values())
            events = len(list((tmp / "tb").rglob("events*")))
            terms = {k: round(float(v), 4) for k, v in row.items() if k not in ("epoch", "lr", "time_s")}
            print(f"precision={precision} cache={dtype}: finite={finite} s/epoch={per_epoch:.3f} "
                  f"resume max|Δw|={diff:.3g} tensorboard files={events} {terms}", flush=True)
            if not finite:
                failures.append(f"{precision}/{dtype}: non-finite loss")
    torch.manual_seed(0)
    tree = build_model("soft_tree", bundle.spec, depth=4)
    print("soft_tree on cuda:", fit(tree, bundle, epochs=2, device="cuda", precision="bf16").history[-1])
    print("FAILURES:" if failures else "all loss checks passed", *failures, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
