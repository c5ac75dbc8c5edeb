"""Check the CUDA paths and time them: AMP precisions, device moves, cache, explainers, a full run.

Run on a machine with a GPU:  python benchmarks/gpu_check.py --out gpu_check.json
Prints one line per check and writes all numbers as JSON. Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from distilens.config import load_config
from distilens.data import load_dataset
from distilens.distill import CE, KD, SoftLabelCache, fit
from distilens.evaluate import predict_logits
from distilens.explain import attribute, explainers_for
from distilens.models import build_model
from distilens.pipeline import run


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--device", default="cuda", help="cpu for a dry run of the script itself")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    results: dict[str, object] = {"device": name, "torch": torch.__version__}
    failures: list[str] = []
    bundle = load_dataset("builtin:digits")

    # 1. AMP: one teacher per precision, same seed; time per epoch and accuracy.
    amp = {}
    # Warm-up: CUDA context, cuDNN heuristics and allocator, so the first timing is not theirs.
    fit(build_model("cnn", bundle.spec, width=64), bundle, epochs=1, device=dev, precision="fp32")
    for precision in ("fp32", "bf16", "fp16"):
        torch.manual_seed(0)
        teacher = build_model("cnn", bundle.spec, width=64)
        t0 = time.perf_counter()
        res = fit(teacher, bundle, epochs=args.epochs, device=dev, precision=precision, seed=0)
        if dev == "cuda":
            torch.cuda.synchronize()
        amp[precision] = {
            "s_per_epoch": (time.perf_counter() - t0) / args.epochs,
            "best_val_accuracy": res.best_val_accuracy,
            "params_device": str(next(teacher.parameters()).device),
        }
        print(f"fit {precision}: {amp[precision]}")
        if not res.best_val_accuracy > 0.9:
            failures.append(f"fit {precision} reached only {res.best_val_accuracy:.3f}")
    results["amp"] = amp

    # 2. Soft-label cache on CUDA equals the CPU forward; KD in bf16 autocast still fp32.
    teacher_cpu = copy.deepcopy(teacher).cpu().eval()
    cache_cpu = SoftLabelCache.build(teacher_cpu, bundle.train)
    teacher_gpu = teacher.to(dev).eval()
    cache_gpu = SoftLabelCache.build(teacher_gpu, bundle.train)
    # Relative to the logits' scale: CUDA convolutions use TF32 by default (10-bit mantissa).
    diff = float((cache_cpu.logits - cache_gpu.logits).abs().max() / cache_cpu.logits.abs().max())
    results["cache_cpu_vs_cuda_rel_max_diff"] = diff
    print(f"cache cpu vs cuda max |diff| / max |logit| = {diff:.2e}")
    if diff > 1e-3:
        failures.append(f"cache differs between CPU and CUDA by {diff}")

    kd = {}
    for precision in ("bf16", "fp16"):
        torch.manual_seed(1)
        student = build_model("cnn", bundle.spec, width=8)
        res = fit(student, bundle, objectives=[KD(temperature=4.0), CE(weight=0.1)], teacher_cache=cache_gpu,
                  epochs=args.epochs, device=dev, precision=precision, seed=1)
        logits = predict_logits(student, bundle.test)
        kd[precision] = {"best_val_accuracy": res.best_val_accuracy, "kd_last": res.history[-1]["kd"],
                         "finite": bool(torch.isfinite(logits).all())}
        print(f"kd {precision}: {kd[precision]}")
        if not kd[precision]["finite"]:
            failures.append(f"kd {precision} produced non-finite logits")
    results["kd_amp"] = kd

    # 3. Explainers on CUDA: output on the inputs' device, equal to CPU.
    expl = {}
    x = bundle.test.inputs[:32]
    for method in explainers_for("image"):
        gpu = attribute(teacher_gpu, x.to(dev), method=method)
        cpu = attribute(teacher_cpu, x, method=method)
        err = float((gpu.cpu() - cpu).abs().max() / (cpu.abs().max() + 1e-12))
        expl[method] = {"device": str(gpu.device), "rel_max_diff_vs_cpu": err}
        print(f"attribute {method}: {expl[method]}")
        if gpu.device.type != torch.device(dev).type or err > 1e-2:
            failures.append(f"attribute {method} on cuda: {expl[method]}")
    results["explainers"] = expl

    # 4. The default run, end to end, on CUDA (bf16 autocast by default).
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run(load_config(None, [f"runtime.device={dev}"]), out=Path(tmp) / "run")
        m = result.metrics
        results["default_run"] = {
            "wall_s": time.perf_counter() - t0,
            "timing_s": m["timing_s"],
            "teacher_accuracy": m["teacher"]["accuracy"],
            "student_accuracy": m["student"]["accuracy"],
            "baseline_accuracy": m["baseline"]["accuracy"],
            "agreement": m["student"]["agreement"],
            "latency_ms": {r: m[r]["latency_ms"] for r in ("teacher", "student")},
            "environment": m["environment"],
        }
        print(f"default run on {dev}: {results['default_run']}")

    results["failures"] = failures
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("FAILURES:" if failures else "all CUDA checks passed", *failures, sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
