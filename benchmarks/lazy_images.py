"""Lazy vs in-memory image folders: load time, training-epoch time and peak memory, side by side.

    PYTHONPATH=src python benchmarks/lazy_images.py [--n 2000] [--size 64] [--epochs 2] [--workers 0 2]

Writes ``--n`` random 64×64 RGB PNGs (4 class folders) to a temporary folder, then runs each
mode in its own fresh process (so each process's peak RSS is its own):

  * ``memory``: ``data.lazy: false``, every image decoded into one float32 tensor;
  * ``lazy/W``: ``data.lazy: true`` with ``W`` worker processes (0 = decoding in the training
    process).

Per mode: the load time (scan, the up-front decode, statistics), one epoch of reading the
training split alone (no model), each training epoch of a
``cnn`` (width 8, batch 64, Adam, one thread) over the training split via
``iterate_batches`` (shuffled, seed 0), the peak RSS of the training process, and for
workers the largest peak RSS of one worker (forked, so it shares the parent's pages).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_folder(root: Path, n: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % 4
        a = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        a[c * size // 4 : (c + 1) * size // 4, :, c % 3] = 230  # a class-dependent bright band
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"{i:05d}.png")


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def _child(root: str, mode: str, epochs: int) -> dict:
    """One mode in this (fresh) process: load, train ``epochs`` epochs, report times and memory."""
    import torch
    from torch import nn

    from distilens.data import iterate_batches, load_dataset
    from distilens.models import build_model

    torch.set_num_threads(1)
    base_mb = _peak_mb(resource.RUSAGE_SELF)
    lazy, workers = (False, 0) if mode == "memory" else (True, int(mode.split("/")[1]))
    t0 = time.perf_counter()
    bundle = load_dataset(f"imagefolder:{root}", lazy=lazy, num_workers=workers)
    load_s = time.perf_counter() - t0
    assert bundle.train.lazy == lazy
    torch.manual_seed(0)
    model = build_model("cnn", bundle.spec, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in iterate_batches(bundle.train, 64, shuffle=True, generator=torch.Generator().manual_seed(1)):
        pass  # reading alone: decoding (lazy) or indexing (memory), no model
    read_s = time.perf_counter() - t0
    epoch_s, checksum = [], 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y, _ in iterate_batches(bundle.train, 64, shuffle=True, generator=gen):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            checksum += float(x[:, :, 0, 0].sum())
        epoch_s.append(time.perf_counter() - t0)
    peak_mb, n_train = _peak_mb(resource.RUSAGE_SELF), len(bundle.train)
    del bundle  # shuts persistent workers down, so their peak is counted below
    import gc

    gc.collect()
    time.sleep(0.5)
    return {
        "mode": mode, "n_train": n_train, "load_s": round(load_s, 3), "read_epoch_s": round(read_s, 3), "epoch_s": [round(e, 3) for e in epoch_s],
        "peak_rss_mb": round(peak_mb, 1), "rss_before_data_mb": round(base_mb, 1),
        "worker_peak_rss_mb": round(_peak_mb(resource.RUSAGE_CHILDREN), 1) if workers else None,
        "checksum": round(checksum, 4), "loss": round(float(loss), 6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--child", nargs=3, metavar=("ROOT", "MODE", "EPOCHS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], int(args.child[2]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        t0 = time.perf_counter()
        _make_folder(root, args.n, args.size)
        print(f"wrote {args.n} {args.size}×{args.size} PNGs in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for mode in ["memory", *(f"lazy/{w}" for w in args.workers)]:
            out = subprocess.run([sys.executable, __file__, "--child", str(root), mode, str(args.epochs)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    same = len({(r["checksum"], r["loss"]) for r in rows}) == 1
    print(f"\nsame batches and final loss in every mode: {same}")
    print("| mode | load s | read-only epoch s | training epoch s (each) | peak RSS MB (training process) | worker peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        epochs = " / ".join(f"{e:.2f}" for e in r["epoch_s"])
        worker = "–" if r["worker_peak_rss_mb"] is None else f"{r['worker_peak_rss_mb']:.0f}"
        print(f"| {r['mode']} | {r['load_s']:.2f} | {r['read_epoch_s']:.2f} | {epochs} | {r['peak_rss_mb']:.0f} (before data {r['rss_before_data_mb']:.0f}) | {worker} |")


if __name__ == "__main__":
    main()
