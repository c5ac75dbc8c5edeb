"""The text Pareto table: accuracy vs parameters vs batch-1 latency, labels vs KD vs KD + copies, from result files.

    python benchmarks/text_pareto.py benchmarks/results/text_round3/*.json \\
        --latency benchmarks/results/text_round3/latency.json [--teacher 0.8311]

Reads the ``students`` rows that ``benchmarks/text_rotten_tomatoes.py --out`` writes (one
file per job; a row name is ``student[+init]/mode``) and the interleaved latencies of its
``--latency`` mode (rows of one student and mode in several files, e.g. more seeds with
``--first-seed``, are joined), and prints one Markdown row per student and mode: test accuracy mean ±
std over seeds, the gap to the teacher, the paired difference from the same student's
label-only row (same seeds; mean and 95% t-interval), agreement with the teacher, the
seed-0 student's word-level IG agreement (Spearman / top-20% IoU) and the cost columns.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from distilens.summary import t_interval


def _mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * sd:.1f}" + ("" if len(values) > 2 else f" ({len(values)})")


def _versus(row: dict[str, Any], control: dict[str, Any] | None) -> str:
    """Paired by seed: row − control in points, with the 95% t-interval over seeds."""
    if control is None:
        return "–"
    n = min(len(row["accuracy"]), len(control["accuracy"]))
    diffs = [100 * (a - b) for a, b in zip(row["accuracy"][:n], control["accuracy"][:n])]
    lo, hi = t_interval(diffs)
    mean = statistics.fmean(diffs)
    return f"{mean:+.1f}" if lo is None else f"{mean:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One row from two files of the same student and mode (more seeds, ``--first-seed``): per-seed lists joined."""
    out = {**b, **a}
    for key in ("accuracy", "agreement", "train_s"):
        out[key] = list(a.get(key, [])) + list(b.get(key, []))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="result files of text_rotten_tomatoes.py")
    parser.add_argument("--latency", default=None, help="the --latency result file")
    parser.add_argument("--teacher", type=float, default=None, help="teacher test accuracy (default: from the files)")
    args = parser.parse_args()

    rows: dict[str, dict[str, Any]] = {}
    teacher: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    for path in args.results:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, row in data.get("students", {}).items():
            rows[name] = _merge(rows[name], row) if name in rows else row
        teacher = data.get("teacher") or teacher
    if args.latency:
        latency = json.loads(Path(args.latency).read_text(encoding="utf-8"))["latency"]["models"]
    t_acc = args.teacher if args.teacher is not None else teacher.get("accuracy")
    t_params = teacher.get("params", 22_713_986)
    t_b1 = latency.get("teacher (MiniLM-L6)", {}).get("latency_ms", {}).get("batch1")

    print("| student | mode | params (× fewer) | batch-1 ms (× faster) | test accuracy % | to teacher | vs labels "
          "(paired by seed) | agreement % | word IG ρ / IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sorted(rows, key=lambda n: (n.split("/")[0], _mode_order(n.split("/")[1]))):
        row = rows[name]
        student, mode = name.split("/")
        arch = student.removesuffix("+init")
        control = rows.get(f"{student}/labels")
        b1 = latency.get(arch, {}).get("latency_ms", {}).get("batch1")
        speedup = None if b1 is None or t_b1 is None else t_b1 / b1
        cost_b1 = "–" if b1 is None else f"{b1:.2f}" + ("" if speedup is None else f" ({speedup:.{1 if speedup < 10 else 0}f}×)")
        acc = statistics.fmean(row["accuracy"])
        gap = "–" if t_acc is None else f"{100 * (acc - t_acc):+.1f}"
        agree = "–" if any(a != a for a in row["agreement"]) else _mean_std(row["agreement"])
        words = row.get("word_ig_agreement_seed0")
        ig = "–" if not words else f"{words['spearman']:.2f} / {words['topk_iou']:.2f}"
        fewer = t_params / row["params"]
        print(f"| {student} | {mode} | {row['params']:,} ({fewer:.{1 if fewer < 10 else 0}f}×) | {cost_b1} | "
              f"{_mean_std(row['accuracy'])} | {gap} | {_versus(row, control) if mode != 'labels' else ''} | "
              f"{agree} | {ig} |")


def _mode_order(mode: str) -> tuple[int, str]:
    order = ["labels", "kd", "labels+copies4", "labels+copies20", "kd+copies4", "kd+copies10", "kd+copies20"]
    base = mode.replace("-tang", "")
    return (order.index(base) if base in order else len(order), mode)


if __name__ == "__main__":
    main()
