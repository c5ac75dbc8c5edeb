"""Does explanation-guided distillation make the student look where the teacher looks?

On the procedural ``shapes`` set (ground-truth masks): a teacher (cnn width 32), then
students of width 8 from the same initialisation: labels only, KD, and KD + gradcam_align
(e²KD) at each weight of ``--align-weights``. Per seed: test accuracy, top-1 agreement,
Grad-CAM agreement with the teacher (Spearman, SSIM) and localisation (relevance mass inside
the mask) on 128 test images; progress per seed goes to stderr.

    python benchmarks/shapes_alignment.py --seeds 0 1 2 [--data builtin:shapes_spurious] [--align-weights 0.1 0.3 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from distilens.data import load_dataset
from distilens.distill import CE, KD, GradCAMAlign, SoftLabelCache, fit, teacher_cache_options
from distilens.evaluate import accuracy, agreement, predict_logits
from distilens.explain.stage import explain_models
from distilens.models import build_model


def _align_name(weight: float) -> str:
    return f"KD + gradcam_align (weight {weight:g})"


def one_seed(source: str, seed: int, epochs: int, align_weights: list[float]) -> dict[str, dict[str, float]]:
    bundle = load_dataset(source, seed=seed)
    torch.manual_seed(seed)
    teacher = build_model("cnn", bundle.spec, width=32)
    fit(teacher, bundle, epochs=epochs, lr=3e-3, seed=seed, device="cpu")
    t_logits = predict_logits(teacher, bundle.test)
    variants = {
        "labels only": None,
        "KD": [KD(temperature=4.0), CE(weight=0.1)],
    }
    for w in align_weights:
        variants[_align_name(w)] = [KD(temperature=4.0), CE(weight=0.1), GradCAMAlign(weight=w)]
    out: dict[str, dict[str, float]] = {}
    for name, objectives in variants.items():
        cache = None
        if objectives:
            cache = SoftLabelCache.build(teacher, bundle.train, **teacher_cache_options(objectives))
        torch.manual_seed(seed + 1)
        student = build_model("cnn", bundle.spec, width=8)
        fit(student, bundle, objectives=objectives, teacher_cache=cache, epochs=epochs, lr=1e-2, seed=seed + 1, device="cpu")
        logits = predict_logits(student, bundle.test)
        _, block = explain_models(teacher, student, bundle.test, ["gradcam"], 128, seed=seed, sanity=False)
        loc = block.get("localization", {})
        out[name] = {
            "accuracy": accuracy(logits, bundle.test.targets),
            "agreement": agreement(logits, t_logits),
            "spearman": block["agreement"]["spearman"],
            "ssim": block["agreement"].get("ssim") or float("nan"),
            "mass_teacher": loc.get("teacher", {}).get("mass_in_mask", float("nan")),
            "mass_student": loc.get("student", {}).get("mass_in_mask", float("nan")),
        }
    out["teacher"] = {"accuracy": accuracy(t_logits, bundle.test.targets)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", default="builtin:shapes")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--align-weights", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runs = []
    for s in args.seeds:
        runs.append(one_seed(args.data, s, args.epochs, args.align_weights))
        summary = ", ".join(f"{k}: {v['accuracy']:.3f}/{v.get('spearman', 1.0):.2f}" for k, v in runs[-1].items())
        print(f"seed {s} at {time.perf_counter() - t0:.0f} s (accuracy/Spearman) {summary}", file=sys.stderr, flush=True)
    print(f"{args.data}, seeds {args.seeds}, {args.epochs} epochs, {time.perf_counter() - t0:.0f} s")
    teacher = [r["teacher"]["accuracy"] for r in runs]
    print(f"teacher accuracy {100 * statistics.mean(teacher):.1f}%")
    print("| student | accuracy % | agreement % | Grad-CAM Spearman | Grad-CAM SSIM | mass in mask (S) | (T) |")
    print("|---|---|---|---|---|---|---|")
    for name in ["labels only", "KD", *map(_align_name, args.align_weights)]:
        rows = [r[name] for r in runs]

        def m(key: str, scale: float = 1.0) -> str:
            v = [scale * r[key] for r in rows]
            return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"

        print(f"| {name} | {m('accuracy', 100)} | {m('agreement', 100)} | {m('spearman')} | {m('ssim')} | "
              f"{m('mass_student')} | {m('mass_teacher')} |")


if __name__ == "__main__":
    main()
