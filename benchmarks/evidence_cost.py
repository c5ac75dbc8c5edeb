"""What the evidence of issue 15 costs: the explain stage with the control, and ``run --seeds`` beyond N runs.

    PYTHONPATH=src python benchmarks/evidence_cost.py RUN [--repeats 3] [--seeds-summary RUN_OF_SEEDS ...]

* The explain stage (:func:`distilens.explain.explain_stage`, the run's own methods and
  explain settings, sanity check included) on the finished run ``RUN``, three ways side by side
  in one process, alternating, so that the machine's load cancels in the ratios: teacher +
  student alone (the stage before issue 15), + the label-only baseline (the control every run
  now explains), + the reference points (``teacher_reseed``, ``init``) where RUN saved them.
  On one thread, CPU time (the work) and wall time; on a busy machine trust the CPU column.
  The target is ≤ 2.2× for the control.
* ``run --seeds``: the whole command's wall time against the sum of its seeds' runs, read from
  each summary.json (``timing_s``); the target is ≤ 5 % overhead.

Prints a Markdown table; the medians of ``--repeats`` timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distilens.config import load_config
from distilens.explain import choose_methods, explain_stage
from distilens.models.io import load_run_model
from distilens.pipeline import saved_data_stage


def explain_ratios(run_dir: Path, repeats: int) -> list[tuple[str, float, float, float, float]]:
    """(what, median CPU s, its ratio, median wall s, its ratio) per set of models explained; ratios to teacher + student."""
    cfg = load_config(run_dir / "config.yaml")
    teacher, student = load_run_model(run_dir, "teacher")[0], load_run_model(run_dir, "student")[0]
    roles = [r for r in ("baseline", "teacher_reseed", "init") if (run_dir / f"{r}.safetensors").is_file()]
    extra = {r: load_run_model(run_dir, r)[0] for r in roles}
    data = saved_data_stage(cfg, run_dir)
    inputs = data.modality.explain_inputs(data.bundle)
    methods, _ = choose_methods(cfg.explain.methods, teacher, student, inputs, explicit=True)
    cases = {"teacher + student (before issue 15)": {}}
    if "baseline" in extra:
        cases["+ label-only baseline (every run)"] = {"baseline": extra["baseline"]}
    if len(extra) > 1:
        cases[f"+ baseline, {', '.join(r for r in roles if r != 'baseline')}"] = extra
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    wall: dict[str, list[float]] = {k: [] for k in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):  # the first round warms up and is dropped
            for name, others in cases.items():
                c0, t0 = time.process_time(), time.perf_counter()
                explain_stage(teacher, student, inputs, methods, tmp, config=cfg.explain, seed=cfg.seed, others=others)
                if i:
                    cpu[name].append(time.process_time() - c0)
                    wall[name].append(time.perf_counter() - t0)
    first = next(iter(cases))
    c, w = statistics.median(cpu[first]), statistics.median(wall[first])
    return [(name, statistics.median(cpu[name]), statistics.median(cpu[name]) / c, statistics.median(wall[name]),
             statistics.median(wall[name]) / w) for name in cases]


def seeds_overhead(folder: Path) -> tuple[int, float, float]:
    """(seeds, sum of the seeds' runs in s, the whole command in s) of one ``run --seeds`` folder."""
    t = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["timing_s"]
    return len(json.loads((folder / "summary.json").read_text(encoding="utf-8"))["seeds"]), t["runs_total"], t["wall"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder (its teacher, student and baseline)")
    parser.add_argument("--repeats", type=int, default=3, help="0: only the --seeds overhead")
    parser.add_argument("--seeds-summary", type=Path, nargs="*", default=[], help="folders written by run --seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: CPU time is then the work done, whatever else the machine runs
    cfg = load_config(args.run / "config.yaml")
    print(f"explain stage on {args.run} ({', '.join(cfg.explain.methods)}, {cfg.explain.n_samples} inputs, "
          f"sanity {cfg.explain.sanity}), median of {args.repeats}:\n")
    print("| models explained | CPU s | × | wall s | × |\n|---|---:|---:|---:|---:|")
    for name, c, cr, w, wr in explain_ratios(args.run, args.repeats) if args.repeats else []:
        print(f"| {name} | {c:.2f} | {cr:.2f} | {w:.2f} | {wr:.2f} |")
    if args.seeds_summary:
        print("\n| run --seeds | seeds | sum of runs (s) | whole command (s) | overhead |\n|---|---:|---:|---:|---:|")
        for folder in args.seeds_summary:
            n, runs, wall = seeds_overhead(folder)
            print(f"| {folder.name} | {n} | {runs:.1f} | {wall:.1f} | {100 * (wall - runs) / runs:+.1f}% |")


if __name__ == "__main__":
    main()
