"""How much does each explainer cost, relative to one forward + backward of the same model?

    PYTHONPATH=src python benchmarks/explain_speed.py [--batch 64] [--shapes] [--write BENCHMARKS.md]

Measured side by side in one run (so machine load cancels in the ratios):
  * each registered explainer on a batch of digits, per sample and as a ratio to the floor
    (one forward + backward of the same model on the same batch, input gradients);
  * deletion/insertion (Petsiuk et al. 2018, ``steps + 1`` forwards per sample) vs per-pixel
    flipping (one forward per pixel: the reference implementation below, benchmark only);
  * the explain stage (``explain_models``) for 128 test digits, teacher width 64 / student 8;
  * with ``--shapes``: teacher (cnn width 32) and KD student (width 8) trained on ``shapes``,
    their explanation agreement and localisation (mass in the ground-truth mask).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from distilens.data import load_dataset
from distilens.explain import attribute, deletion_insertion, explain_models, explainers_for
from distilens.models import build_model

# Options that keep the sampling methods affordable; everything else runs on its defaults.
OPTIONS = {"kernel_shap": {"n_samples": 128}, "lime": {"n_samples": 128}}


def _timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, Captum set-up)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _floor(model: nn.Module, x: Tensor, target: Tensor) -> None:
    x = x.detach().requires_grad_(True)
    model(x).gather(1, target.view(-1, 1)).sum().backward()


@torch.no_grad()
def pixel_flipping(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, batch_size: int = 2048) -> Tensor:
    """Reference: delete features one at a time in relevance order, D + 1 forwards per sample.

    Samek et al. 2017's per-pixel curve; the library's ``deletion_insertion`` samples it at
    ``steps + 1`` points instead. Returns the (B,) areas under the deletion curve.
    """
    b = x.shape[0]
    rel = maps.sum(1).flatten(1) if maps.dim() == 4 else maps.flatten(1)  # (B, D)
    d = rel.shape[1]
    aucs = []
    for i in range(b):
        order = rel[i].argsort(descending=True)
        keep = torch.ones(d + 1, d)
        for k in range(1, d + 1):  # row k: the first k features removed
            keep[k] = keep[k - 1]
            keep[k, order[k - 1]] = 0
        xs = x[i].unsqueeze(0) * keep.view(d + 1, 1, *x.shape[2:]) if x.dim() == 4 else x[i] * keep
        probs = torch.cat([model(c).softmax(1) for c in xs.split(batch_size)])[:, target[i]]
        aucs.append(torch.trapezoid(probs, dx=1.0 / d))
    return torch.stack(aucs)


def explainer_table(batch: int, repeats: int) -> list[tuple[str, str, float, float, float]]:
    bundle = load_dataset("builtin:digits", seed=0)
    torch.manual_seed(0)
    models = {"teacher w64": build_model("cnn", bundle.spec, width=64).eval(), "student w8": build_model("cnn", bundle.spec, width=8).eval()}
    x = bundle.test.inputs[:batch]
    rows = []
    for role, model in models.items():
        target = model(x).argmax(1)
        floor = _timeit(lambda: _floor(model, x, target), repeats)
        for method in explainers_for("image"):
            reps = 1 if method in ("kernel_shap", "lime", "smoothgrad") else repeats
            t = _timeit(lambda: attribute(model, x, target, method=method, **OPTIONS.get(method, {})), reps)
            rows.append((role, method, 1e3 * t / batch, t / floor, 1e3 * floor / batch))
        maps = attribute(model, x, target, method="saliency")
        ours = _timeit(lambda: deletion_insertion(model, x, maps, target, steps=16), repeats)
        ref = _timeit(lambda: pixel_flipping(model, x, maps, target), 1)
        rows.append((role, "deletion+insertion (16 steps)", 1e3 * ours / batch, ours / floor, 1e3 * floor / batch))
        rows.append((role, "per-pixel flipping, deletion only (64 px)", 1e3 * ref / batch, ref / floor, 1e3 * floor / batch))
    return rows


def stage_time() -> tuple[float, float]:
    bundle = load_dataset("builtin:digits", seed=0)
    torch.manual_seed(0)
    t, s = build_model("cnn", bundle.spec, width=64).eval(), build_model("cnn", bundle.spec, width=8).eval()
    methods = ["gradcam", "integrated_gradients"]
    with_sanity = _timeit(lambda: explain_models(t, s, bundle.test, methods, 128, seed=0), 1)
    without = _timeit(lambda: explain_models(t, s, bundle.test, methods, 128, seed=0, sanity=False), 1)
    return with_sanity, without


def shapes_run() -> dict[str, object]:
    from distilens.distill import CE, KD, SoftLabelCache, fit
    from distilens.evaluate import predict_logits

    bundle = load_dataset("builtin:shapes", seed=0)
    torch.manual_seed(0)
    teacher = build_model("cnn", bundle.spec, width=32)
    t0 = time.perf_counter()
    fit(teacher, bundle, epochs=5, seed=0)
    cache = SoftLabelCache.build(teacher, bundle.train)
    torch.manual_seed(1)
    student = build_model("cnn", bundle.spec, width=8)
    fit(student, bundle, objectives=[KD(temperature=4.0), CE(weight=0.1)], teacher_cache=cache, epochs=5, seed=0)
    train_s = time.perf_counter() - t0
    acc = {
        role: float((predict_logits(m, bundle.test).argmax(1).cpu() == bundle.test.targets).float().mean())
        for role, m in (("teacher", teacher), ("student", student))
    }
    _, block = explain_models(teacher, student, bundle.test, ["gradcam", "integrated_gradients", "saliency"], 64, seed=0, sanity=False)
    return {"train_s": train_s, "accuracy": acc, "methods": block["methods"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", action="store_true", help="also train on shapes and report agreement/localisation")
    parser.add_argument("--write", default=None, help="write the 'Explanations' section into this markdown file")
    args = parser.parse_args()
    command = "PYTHONPATH=src python benchmarks/explain_speed.py " + " ".join(sys.argv[1:])
    device = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"

    lines = ["## Explanations", "", f"Command: `{command.strip()}`  ", f"Machine: {device}.", ""]
    lines += [
        f"Cost per sample on a batch of {args.batch} digits (8×8); ratio = time / one forward+backward",
        "of the same model on the same batch (median of repeats, measured side by side in one run).",
        "",
        "| model | method | ms / sample | × fwd+bwd |",
        "|---|---|---:|---:|",
    ]
    rows = explainer_table(args.batch, args.repeats)
    for role, method, ms, ratio, _ in rows:
        lines.append(f"| {role} | {method} | {ms:.3f} | {ratio:.1f} |")
    floors = {role: f for role, *_, f in rows}
    lines += ["", "Floor (one forward+backward): " + ", ".join(f"{r} {f:.3f} ms/sample" for r, f in floors.items()) + "."]
    for role in floors:
        ours = next(r for r in rows if r[0] == role and r[1].startswith("deletion+"))[3]
        ref = next(r for r in rows if r[0] == role and r[1].startswith("per-pixel"))[3]
        lines.append(f"Per-pixel flipping (deletion only) / deletion+insertion ({role}): {ref / ours:.1f}×.")
    with_sanity, without = stage_time()
    lines += [
        "",
        f"Explain stage, 128 test digits, gradcam + integrated_gradients, teacher w64 / student w8: "
        f"{with_sanity:.2f} s with the sanity check, {without:.2f} s without.",
    ]
    if args.shapes:
        res = shapes_run()
        lines += [
            "",
            f"Shapes (teacher cnn w32, KD student w8, 5 epochs each, trained in {res['train_s']:.0f} s): "
            f"test accuracy teacher {res['accuracy']['teacher']:.3f}, student {res['accuracy']['student']:.3f}.",
            "",
            "| method | spearman | ssim | topk_iou | mass_in_mask T | mass_in_mask S | pointing T | pointing S |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in res["methods"]:
            a, loc = b["agreement"], b.get("localization", {})
            lt, ls = loc.get("teacher", {}), loc.get("student", {})
            lines.append(
                f"| {b['method']} | {a['spearman']:.2f} | {a.get('ssim', float('nan')):.2f} | {a['topk_iou']:.2f} | "
                f"{lt.get('mass_in_mask', float('nan')):.2f} | {ls.get('mass_in_mask', float('nan')):.2f} | "
                f"{lt.get('pointing_game', float('nan')):.2f} | {ls.get('pointing_game', float('nan')):.2f} |"
            )
        lines.append("Chance level of mass_in_mask is the mask's area fraction (≈ 0.1 on shapes).")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = Path(args.write)
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        pattern = re.compile(r"## Explanations\n.*?(?=\n## |\Z)", re.S)
        new = pattern.sub(lambda _: text.rstrip("\n"), old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        path.write_text(new if new.endswith("\n") else new + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
