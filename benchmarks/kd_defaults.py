"""Does KD beat the label-only student on digits, and for which settings? (choosing defaults)

For each seed: one teacher (cnn width 64, 15 epochs, lr 1e-3), its soft labels cached once,
then for each student width × epochs a label-only student and KD students (KD + 0.1·CE at
each temperature), all with the same initial weights and batch order as the baseline.
Prints mean test accuracy and the paired difference KD − baseline (mean ± std over seeds,
wins/losses). Results append to a JSON-lines file so runs can be split across processes.

    python benchmarks/kd_defaults.py --seeds 0 1 2 3 --out kd_defaults.jsonl
    python benchmarks/kd_defaults.py --summary kd_defaults.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
from pathlib import Path

import torch

from distilens.data import load_dataset
from distilens.distill import CE, KD, SoftLabelCache, fit
from distilens.evaluate import accuracy, agreement, predict_logits
from distilens.models import build_model


def run(seeds: list[int], widths: list[int], epochs: list[int], temperatures: list[float], out: Path) -> None:
    with out.open("a") as f:
        for seed in seeds:
            bundle = load_dataset("builtin:digits", seed=seed)
            torch.manual_seed(seed)
            teacher = build_model("cnn", bundle.spec, width=64)
            fit(teacher, bundle, epochs=15, lr=1e-3, seed=seed, device="cpu")
            t_logits = predict_logits(teacher, bundle.test)
            cache = SoftLabelCache.build(teacher, bundle.train)
            for width in widths:
                for n_epochs in epochs:
                    variants: list[tuple[str, list | None]] = [("baseline", None)]
                    variants += [(f"kd_T{t:g}", [KD(temperature=t), CE(weight=0.1)]) for t in temperatures]
                    for name, objectives in variants:
                        torch.manual_seed(seed + 1)
                        student = build_model("cnn", bundle.spec, width=width)
                        fit(student, bundle, objectives=objectives, teacher_cache=cache if objectives else None,
                            epochs=n_epochs, lr=1e-2, seed=seed + 1, device="cpu")
                        logits = predict_logits(student, bundle.test)
                        row = {"seed": seed, "width": width, "epochs": n_epochs, "variant": name,
                               "accuracy": accuracy(logits, bundle.test.targets),
                               "agreement": agreement(logits, t_logits),
                               "teacher_accuracy": accuracy(t_logits, bundle.test.targets)}
                        f.write(json.dumps(row) + "\n")
                        f.flush()


def summary(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by: dict[tuple, dict[int, dict]] = collections.defaultdict(dict)
    for r in rows:
        by[(r["width"], r["epochs"], r["variant"])][r["seed"]] = r
    teacher = statistics.mean(r["teacher_accuracy"] for r in rows)
    print(f"teacher test accuracy {100 * teacher:.2f}% (mean over {len({r['seed'] for r in rows})} seeds)")
    print(f"{'width':>5} {'epochs':>6} {'variant':<9} {'n':>2} {'accuracy %':>13} {'agree %':>7} {'KD − base (pts)':>17} W/L")
    for (width, n_epochs, variant), runs in sorted(by.items()):
        base = by[(width, n_epochs, "baseline")]
        acc = [100 * r["accuracy"] for r in runs.values()]
        diffs = [100 * (runs[s]["accuracy"] - base[s]["accuracy"]) for s in runs if s in base]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        dsd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        agree = statistics.mean(100 * r["agreement"] for r in runs.values())
        diff = "" if variant == "baseline" else f"{statistics.mean(diffs):+.2f} ± {dsd:.2f}"
        wl = "" if variant == "baseline" else f"{sum(d > 0 for d in diffs)}/{sum(d < 0 for d in diffs)}"
        print(f"{width:>5} {n_epochs:>6} {variant:<9} {len(acc):>2} {statistics.mean(acc):>7.2f} ± {sd:.2f} {agree:>7.2f} {diff:>17} {wl}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--widths", type=int, nargs="+", default=[4, 6, 8])
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 60])
    p.add_argument("--temperatures", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("kd_defaults.jsonl"))
    p.add_argument("--summary", type=Path, help="only print the table of an earlier results file")
    args = p.parse_args()
    if args.summary:
        summary(args.summary)
        return
    torch.set_num_threads(args.threads)
    run(args.seeds, args.widths, args.epochs, args.temperatures, args.out)
    summary(args.out)


if __name__ == "__main__":
    main()
