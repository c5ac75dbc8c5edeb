"""Wall time of the default digits distill stage with 1 process vs N under torchrun (CPU, gloo).

Each run is the default config with a 1-epoch teacher (the distill stage's cost does not
depend on the teacher's quality), no baseline and a small explain stage; the number read
is ``timing_s.distill`` from metrics.json (rank 0's clock). Runs alternate 1 / N so that
load from other jobs on the machine falls on both.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/ddp_wall.py --repeats 2 --nproc 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = ["--quiet", "--set", "teacher.train.epochs=1", "--set", "distill.baseline=false",
        "--set", "explain.methods=[saliency]", "--set", "explain.n_samples=8", "--set", "explain.sanity=false",
        "--set", "runtime.threads=1", "--set", "runtime.device=cpu"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(nproc: int, out: Path) -> dict[str, float]:
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                                      "--master_addr=127.0.0.1", f"--master_port={_port()}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *launcher, "-m", "distilens", "run", "--out", str(out), *ARGS],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    t = metrics["timing_s"]
    return {"distill": t["distill"], "teacher": t["teacher"], "total": t["total"], "process_wall": wall,
            "student_acc": metrics["student"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    rows: dict[int, list[dict[str, float]]] = {1: [], args.nproc: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for n in rows:
                res = one_run(n, Path(tmp) / f"run-{n}-{r}")
                rows[n].append(res)
                print(f"nproc={n} repeat={r}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    print("\n| processes | distill stage s (median) | teacher stage s, 1 epoch | whole command s | student acc |")
    print("|---|---|---|---|---|")
    for n, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        each = ", ".join(f"{r['distill']:.1f}" for r in rs)
        print(f"| {n} | {med['distill']:.1f} ({each}) | "
              f"{med['teacher']:.1f} | {med['process_wall']:.1f} | {med['student_acc']:.4f} |")
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
