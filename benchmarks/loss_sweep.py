"""AT β / layer and gradcam_align weight on top of KD, paired over seeds (digits or shapes).

Per seed: the data split, the teacher of benchmarks/quality.py (cnn width 32, 15 epochs,
kept in /tmp/tree between runs), then one cnn width 8 student per variant from the same
initialisation and batch order: ``kd`` = KD (T 4) + 0.1·CE; ``at:BETA[:LAYER]`` and
``gc:WEIGHT`` add attention_transfer / gradcam_align to it. ``--explain`` adds the Grad-CAM
Spearman agreement with the teacher on 128 test images.

    PYTHONPATH=src python benchmarks/loss_sweep.py --variants kd at:10 at:100
    PYTHONPATH=src python benchmarks/loss_sweep.py --explain --variants kd gc:0.3 gc:1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from distilens.data import load_dataset
from distilens.distill import CE, KD, AttentionTransfer, GradCAMAlign, SoftLabelCache, evaluate_split, fit
from distilens.distill import teacher_cache_options
from distilens.explain.stage import explain_models
from distilens.models import build_model
from tree_sweep import cached_teacher  # benchmarks/ is on sys.path when run as a script


def objectives(spec: str) -> list:
    kd = [KD(temperature=4.0), CE(weight=0.1)]
    if spec == "kd":
        return kd
    kind, *args = spec.split(":")
    if kind == "at":  # at:BETA[:LAYER]
        layer = args[1] if len(args) > 1 else "auto"
        return kd + [AttentionTransfer(beta=float(args[0]), student_layer=layer, teacher_layer=layer)]
    if kind == "gc":  # gc:WEIGHT
        return kd + [GradCAMAlign(weight=float(args[0]))]
    raise ValueError(spec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--data", default="digits")
    p.add_argument("--variants", nargs="+", default=["kd"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--teacher-epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--explain", action="store_true")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res: dict[str, list[tuple[float, float]]] = {}
    for seed in a.seeds:
        bundle = load_dataset(f"builtin:{a.data}", seed=seed)
        path = Path(f"/tmp/tree/teacher_{a.data}_{a.teacher_epochs}_{seed}.pt")
        if a.data == "digits" and a.teacher_epochs == 15:
            path = Path(f"/tmp/tree/teacher_{seed}.pt")
        teacher = cached_teacher(bundle, seed, a.teacher_epochs, path)
        for spec in a.variants:
            objs = objectives(spec)
            cache = SoftLabelCache.build(teacher, bundle.train, **teacher_cache_options(objs))
            torch.manual_seed(1000 + seed)
            student = build_model("cnn", bundle.spec, width=8)
            fit(student, bundle, objectives=objs, teacher_cache=cache, epochs=a.epochs, lr=a.lr, seed=seed, device="cpu")
            acc = evaluate_split(student, bundle.test)[0]
            rho = float("nan")
            if a.explain:
                _, block = explain_models(teacher, student, bundle.test, ["gradcam"], 128, seed=seed, sanity=False)
                rho = block["agreement"]["spearman"]
            res.setdefault(spec, []).append((acc, rho))
        print(f"seed {seed} {time.perf_counter() - t0:.0f}s " + " ".join(f"{k}={v[-1][0]:.3f}/{v[-1][1]:.2f}"
              for k, v in res.items()), file=sys.stderr, flush=True)

    def sd(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    base = [r[0] for r in res[a.variants[0]]]
    print(f"{a.tag} {a.data} seeds {a.seeds} {time.perf_counter() - t0:.0f}s; diff vs {a.variants[0]}")
    for spec, rows in res.items():
        acc, rho = [r[0] for r in rows], [r[1] for r in rows]
        d = [100 * (x - b) for x, b in zip(acc, base)]
        line = f"  {spec}: acc {100 * statistics.mean(acc):.2f} ± {100 * sd(acc):.2f}  diff {statistics.mean(d):+.2f} ± {sd(d):.2f}"
        print(line + (f"  spearman {statistics.mean(rho):.3f} ± {sd(rho):.3f}" if a.explain else ""))
    with open("/tmp/tree/loss_results.jsonl", "a") as f:
        f.write(json.dumps({"tag": a.tag, "data": a.data, "seeds": a.seeds, "res": res}) + "\n")


if __name__ == "__main__":
    main()
