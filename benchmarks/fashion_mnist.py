"""Fashion-MNIST: labels vs KD vs DKD, without augmentation and with it (stored views vs online), and a soft tree.

    PYTHONPATH=src python benchmarks/fashion_mnist.py teacher  --out benchmarks/results/fmnist
    PYTHONPATH=src python benchmarks/fashion_mnist.py students --out benchmarks/results/fmnist --width 6 --seeds 0 1
    PYTHONPATH=src python benchmarks/fashion_mnist.py students --out benchmarks/results/fmnist --width 3 --modes labels kd kd+stored
    PYTHONPATH=src python benchmarks/fashion_mnist.py students --out benchmarks/results/fmnist --tree --seeds 0 1 2 3 4
    PYTHONPATH=src python benchmarks/fashion_mnist.py summary  --out benchmarks/results/fmnist

At full scale (every training image, a ResNet teacher; the protocol of BENCHMARKS.md's
"Fashion-MNIST at full scale")::

    PYTHONPATH=src python benchmarks/fashion_mnist.py teacher  --out OUT --n-train 0 --n-val 0 \
        --teacher-arch resnet20 --teacher-epochs 12
    PYTHONPATH=src python benchmarks/fashion_mnist.py students --out OUT --n-train 0 --n-val 0 \
        --width 16 --epochs 10 --modes labels labels+aug kd kd+stored dkd

The data: the official 10,000 test images (all of them), the student's and teacher's
training set a stratified, seeded subset of ``--n-train`` of the 54,000 training images (the
6,000 validation images are carved off first, as ``distilens run`` does; 0: all of them), and
``--n-val`` of those validation images to pick the best epoch (0: all). ``teacher`` trains a
``--teacher-arch`` (a ``cnn`` of ``--teacher-width``, or a named size such as ``resnet20``)
with the augmentation and saves it with two soft-label caches: the plain images' and K stored
augmented views of every training image (fp16). ``students`` trains each (mode, seed) job and
appends one JSON line per job to ``OUT/results.jsonl`` (so a cut-short run keeps what
finished). Modes: ``labels`` / ``kd`` / ``dkd`` without augmentation; ``labels+aug`` (labels
only, augmented); ``kd+stored`` / ``dkd+stored`` (the stored views and their soft labels);
``kd+online`` (the teacher labels each augmented batch in the step). ``--tree``: a soft
decision tree, ``tree`` (labels) vs ``tree+leaf_kd``. Epoch times are each job's median
``time_s`` (training and the validation pass), on one thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from distilens.data import DataBundle, load_dataset
from distilens.data.augment import parse_augment
from distilens.distill import CE, DKD, KD, SoftLabelCache, build_objectives, fit
from distilens.distill.trainer import evaluate_split
from distilens.models import build_model

AUGMENT = [{"name": "crop", "padding": 2}, {"name": "hflip"}]
MODES = ["labels", "labels+aug", "kd", "kd+stored", "kd+online", "dkd", "dkd+stored"]


def _stratified(targets: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices, the same number per class, seeded."""
    g = torch.Generator().manual_seed(seed)
    classes = int(targets.max()) + 1
    picks = [torch.nonzero(targets == c).flatten() for c in range(classes)]
    return torch.sort(torch.cat([p[torch.randperm(len(p), generator=g)[: n // classes]] for p in picks])).values


def data(args: argparse.Namespace) -> DataBundle:
    b = load_dataset("builtin:fashion_mnist", seed=0)
    train = b.train.subset(_stratified(b.train.targets, args.n_train, 0)) if args.n_train else b.train
    val = b.val.subset(_stratified(b.val.targets, args.n_val, 1)) if args.n_val else b.val
    return replace(b, train=train, val=val)


def _teacher_model(spec: Any, meta: dict[str, Any]) -> torch.nn.Module:
    """The teacher's architecture as ``teacher.json`` names it (older records: a cnn of ``width``)."""
    arch = meta.get("arch", "cnn")
    return build_model(arch, spec, width=meta["width"]) if arch == "cnn" else build_model(arch, spec)


def _fit_args(args: argparse.Namespace, epochs: int) -> dict[str, Any]:
    return dict(epochs=epochs, batch_size=args.batch_size, lr=args.lr, device="cpu", precision="fp32")


def teacher(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b, aug = data(args), parse_augment(AUGMENT)
    torch.manual_seed(0)
    model = _teacher_model(b.spec, {"arch": args.teacher_arch, "width": args.teacher_width})
    t0 = time.perf_counter()
    r = fit(model, b, augment=aug, seed=0, **_fit_args(args, args.teacher_epochs))
    train_s = time.perf_counter() - t0
    torch.save(model.state_dict(), out / "teacher.pt")
    t0 = time.perf_counter()
    plain = SoftLabelCache.build(model, b.train, dtype="fp16")
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stored = SoftLabelCache.build(model, b.train, dtype="fp16", augment=aug, views=args.views, view_seed=0)
    stored_s = time.perf_counter() - t0
    plain.save(out / "cache")
    stored.save(out / "cache")
    acc, _ = evaluate_split(model, b.test)
    record = {
        "role": "teacher", "arch": args.teacher_arch, "width": args.teacher_width if args.teacher_arch == "cnn" else None, "params": sum(p.numel() for p in model.parameters()),
        "epochs": args.teacher_epochs, "n_train": len(b.train), "test_accuracy": acc, "train_s": round(train_s, 1),
        "epoch_s": round(statistics.median(h["time_s"] for h in r.history), 2), "best_epoch": r.best_epoch,
        "plain_cache": {"key": plain.key, "seconds": round(plain_s, 1), "bytes": plain.nbytes()},
        "stored_cache": {"key": stored.key, "views": args.views, "seconds": round(stored_s, 1), "bytes": stored.nbytes()},
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    (out / "teacher.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record), flush=True)


def _objectives(mode: str) -> list:
    loss = mode.split("+")[0]
    if loss in ("labels", "tree"):
        return [CE()]
    if loss == "kd":
        return [KD(temperature=4.0), CE(weight=0.1)]
    if loss == "dkd":
        return [DKD(alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=1), CE(weight=1.0)]
    if loss == "leaf_kd":
        return build_objectives([{"name": "leaf_kd"}])
    raise ValueError(mode)


def _needs_teacher(mode: str) -> bool:
    return mode.split("+")[0] in ("kd", "dkd") or mode in ("tree+leaf_kd", "kd+online")


def _teacher_and_caches(out: Path, b: DataBundle) -> tuple[torch.nn.Module, dict[str, SoftLabelCache]]:
    meta = json.loads((out / "teacher.json").read_text())
    t = _teacher_model(b.spec, meta)
    t.load_state_dict(torch.load(out / "teacher.pt"))
    t.eval()
    caches = {
        name: SoftLabelCache.load(out / "cache" / SoftLabelCache.filename(meta[f"{name}_cache"]["key"]),
                                  key=meta[f"{name}_cache"]["key"], num_samples=len(b.train))
        for name in ("plain", "stored")
    }
    return t, caches


def _student_file(arch: str, arch_args: dict[str, Any], mode: str, seed: int) -> str:
    size = "-".join(f"{k}{v}" for k, v in arch_args.items())
    return f"{arch}-{size}-{mode}-seed{seed}.pt"


def students(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b, aug = data(args), parse_augment(AUGMENT)
    if args.tree:
        modes = [m for m in args.modes if m.startswith("tree")] or ["tree", "tree+leaf_kd"]
    else:
        modes = [m for m in args.modes if not m.startswith("tree")]
    # label-only modes run without a teacher, so they can start while it trains
    t, caches = _teacher_and_caches(out, b) if any(map(_needs_teacher, modes)) else (None, {})
    arch, arch_args = ("soft_tree", {"depth": args.tree_depth}) if args.tree else ("cnn", {"width": args.width})
    for seed in args.seeds:
        for mode in modes:  # interleaved: machine load hits every mode of a seed alike
            augmented = "+stored" in mode or "+online" in mode or "+aug" in mode
            cache = caches["stored"] if "+stored" in mode else caches["plain"] if _needs_teacher(mode) else None
            torch.manual_seed(100 + seed)
            model = build_model(arch, b.spec, **arch_args)
            t0 = time.perf_counter()
            r = fit(model, b, objectives=_objectives(mode.replace("tree+", "")), teacher_cache=cache,
                    augment=aug if augmented else None, online_teacher=t if "+online" in mode else None,
                    seed=seed, **_fit_args(args, args.epochs))
            wall = time.perf_counter() - t0
            acc, _ = evaluate_split(model, b.test)
            (out / "students").mkdir(exist_ok=True)  # for the explanations' evidence (``explain``)
            torch.save(model.state_dict(), out / "students" / _student_file(arch, arch_args, mode, seed))
            epoch_s = statistics.median(h["time_s"] for h in r.history)
            row = {
                "role": "student", "arch": arch, **arch_args, "mode": mode, "n_train": len(b.train), "seed": seed, "epochs": args.epochs,
                "params": sum(p.numel() for p in model.parameters()), "test_accuracy": acc,
                "epoch_s": round(epoch_s, 3), "images_per_s": round(len(b.train) / epoch_s, 1), "wall_s": round(wall, 1),
                "best_epoch": r.best_epoch, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def summary(args: argparse.Namespace) -> None:
    out = Path(args.out)
    meta = json.loads((out / "teacher.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    name = meta.get("arch", "cnn") + (f" width {meta['width']}" if meta.get("width") else "")
    print(f"teacher: {name} ({meta['params']:,} params), {meta['epochs']} epochs on "
          f"{meta['n_train']:,} images, test accuracy {meta['test_accuracy']:.4f}, epoch {meta['epoch_s']} s, "
          f"stored views: {meta['stored_cache']['views']} × {meta['n_train']:,} in {meta['stored_cache']['seconds']} s, "
          f"{meta['stored_cache']['bytes'] / 1e6:.2f} MB (plain cache {meta['plain_cache']['bytes'] / 1e6:.2f} MB)\n")
    groups: dict[tuple[str, Any], dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["arch"], r.get("width") or r.get("depth")), {}).setdefault(r["mode"], []).append(r)
    for (arch, width), by_mode in groups.items():
        params = next(iter(by_mode.values()))[0]["params"]
        size = f" depth {width}" if arch == "soft_tree" and width else f" width {width}" if width else ""
        print(f"### {arch}{size}: {params:,} params ({meta['params'] / params:.1f}× fewer than the teacher)\n")
        print("| mode | seeds | test accuracy (mean ± sd) | per seed | epoch s (median) | images/s | wall s (mean) |")
        print("|---|---|---|---|---|---|---|")
        for mode, rs in by_mode.items():
            accs = [r["test_accuracy"] for r in rs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            ep = statistics.median(r["epoch_s"] for r in rs)
            print(f"| {mode} | {len(rs)} | {statistics.mean(accs):.4f} ± {sd:.4f} | {', '.join(f'{a:.4f}' for a in accs)} | "
                  f"{ep:.2f} | {statistics.median(r['images_per_s'] for r in rs):.0f} | {statistics.mean(r['wall_s'] for r in rs):.0f} |")
        base = by_mode.get("labels+aug")
        if base:
            for mode in ("kd+stored", "dkd+stored", "kd+online"):
                if mode in by_mode:
                    paired = [s["epoch_s"] / l["epoch_s"] for s in by_mode[mode] for l in base if l["seed"] == s["seed"]]
                    print(f"\nepoch-time ratio {mode} / labels+aug: median of {len(paired)} paired seeds "
                          f"{statistics.median(paired):.3f} (each: {', '.join(f'{p:.3f}' for p in paired)})")
        print()


#: Each distilled mode and the label-only student of the same seed it is paired with.
CONTROL = {"kd": "labels", "dkd": "labels", "kd+stored": "labels+aug", "dkd+stored": "labels+aug",
           "kd+online": "labels+aug", "tree+leaf_kd": "tree"}


def _display(arch: str, size: tuple[tuple[str, int], ...]) -> str:
    """``cnn width 16``: a student's name in the tables."""
    return " ".join([arch, *(f"{k} {v}" for k, v in size)])


def explain(args: argparse.Namespace) -> None:
    """Agreement with the teacher's maps, distilled student vs its label-only control, per seed and over seeds."""
    from distilens.explain import ExplainInputs, explain_models
    from distilens.explain.methods import inapplicable_reason
    from distilens.summary import t_interval

    out = Path(args.out)
    b = data(args)
    teacher_model, _ = _teacher_and_caches(out, b)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    found: dict[tuple[str, tuple[tuple[str, int], ...], str, int], Path] = {}  # (arch, size, mode, seed) → weights
    for r in rows:
        size = tuple((k, r[k]) for k in ("width", "depth") if r.get(k) is not None)
        path = out / "students" / _student_file(r["arch"], dict(size), r["mode"], r["seed"])
        if path.is_file():
            found[(r["arch"], size, r["mode"], r["seed"])] = path
    inputs = ExplainInputs.from_split(b.test)
    lines = []
    for (arch, size, mode, seed), path in sorted(found.items(), key=lambda kv: (_display(*kv[0][:2]), *kv[0][2:])):
        name = _display(arch, size)
        control = found.get((arch, size, CONTROL.get(mode, ""), seed))
        if control is None or (args.arch and arch != args.arch):
            continue
        models = {}
        for role, file in (("student", path), ("baseline", control)):
            models[role] = build_model(arch, b.spec, **dict(size))
            models[role].load_state_dict(torch.load(file))
            models[role].eval()
        methods = [m for m in args.methods if inapplicable_reason(m, teacher_model, models["student"], inputs) is None]
        t0 = time.perf_counter()  # a soft tree has no useful gradients: occlusion explains it
        _, block = explain_models(teacher_model, models["student"], inputs, methods or ["occlusion"], args.n_explain,
                                  seed=seed, sanity=False, others={"baseline": models["baseline"]})
        for m in block["methods"]:
            pd = m["paired"]["student_minus_baseline"][SCORE]
            row = {"student": name, "mode": mode, "control": CONTROL[mode], "seed": seed, "method": m["method"],
                   "n_samples": m["n_samples"], "student_spearman": m["models"]["student"]["agreement"][SCORE],
                   "baseline_spearman": m["models"]["baseline"]["agreement"][SCORE], "difference": pd["mean"],
                   "ci_low": pd["ci_low"], "ci_high": pd["ci_high"], "seconds": round(time.perf_counter() - t0, 1)}
            lines.append(row)
            print(json.dumps(row), flush=True)
    with open(out / "explain.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in lines))
    print(f"\n| student | distilled vs control | method | seeds | distilled {SCORE} | label-only {SCORE} | "
          "distilled − label-only (95% t-interval over seeds) | seeds whose per-sample 95% CI excludes 0 (above/below) |")
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in lines:
        groups.setdefault((r["student"], r["mode"], r["method"]), []).append(r)
    for (name, mode, method), rs in groups.items():
        diffs = [r["difference"] for r in rs]
        lo, hi = t_interval(diffs)
        interval = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else ""
        above = sum(r["ci_low"] > 0 for r in rs)
        below = sum(r["ci_high"] < 0 for r in rs)
        print(f"| {name} | {mode} vs {rs[0]['control']} | {method} | {len(rs)} | "
              f"{statistics.mean(r['student_spearman'] for r in rs):.3f} | {statistics.mean(r['baseline_spearman'] for r in rs):.3f} | "
              f"{statistics.mean(diffs):+.3f}{interval} | {above}/{below} |")


SCORE = "spearman"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["teacher", "students", "summary", "explain"])
    p.add_argument("--out", default="benchmarks/results/fmnist")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--teacher-arch", default="cnn", help="cnn (of --teacher-width) or a named size: resnet8, resnet20, …")
    p.add_argument("--teacher-width", type=int, default=24)
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--width", type=int, default=6)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", default=MODES, choices=[*MODES, "tree", "tree+leaf_kd"])
    p.add_argument("--tree", action="store_true", help="a soft_tree student: labels vs leaf_kd (no augmentation)")
    p.add_argument("--tree-depth", type=int, default=4, help="the soft tree's depth (Frosst & Hinton used 8 on MNIST)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="+", default=["gradcam", "integrated_gradients"], help="explain: the methods")
    p.add_argument("--n-explain", type=int, default=128, help="explain: test images explained per pair (stratified)")
    p.add_argument("--arch", default=None, help="explain: only students of this architecture (cnn, soft_tree)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"teacher": teacher, "students": students, "summary": summary, "explain": explain}[args.command](args)


if __name__ == "__main__":
    main()
