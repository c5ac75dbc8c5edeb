"""Soft-tree recipes on digits: the label-trained tree against distilled ones, paired over seeds.

Per seed: the data split, the teacher of benchmarks/quality.py (cnn width 32, 15 epochs,
kept in /tmp/tree between runs), then one soft_tree per objective spec from the same
initialisation and batch order. Specs: ``ce``, ``kd@T``, ``leafce`` (the paper's
path-weighted leaf loss on one-hot labels), ``leafkd@T`` (the same on the teacher's soft
targets at T, i.e. the ``leaf_kd`` objective), joined with ``+`` and weighted with ``W*``.
A spec starting ``aug:`` trains on a larger transfer set: the training images plus
``--copies`` copies of each shifted by up to one pixel (zero fill) with N(0, 0.1²) noise;
the copies carry their source's label and the teacher's outputs (the cache covers them).
Prints max-path test accuracy, paired differences to ``--hard`` and wins/losses.

    PYTHONPATH=src python benchmarks/tree_sweep.py --soft kd@1 kd@2 kd@4 "0.5*kd@2+0.5*ce"
    PYTHONPATH=src python benchmarks/tree_sweep.py --hard leafce --soft leafkd@1 leafkd@2 leafkd@4
    PYTHONPATH=src python benchmarks/tree_sweep.py --soft leafkd@4 aug:leafce aug:leafkd@4 --copies 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from distilens.data import DataBundle, Split, load_dataset
from distilens.distill import CE, KD, LeafKD, SoftLabelCache, evaluate_split, fit
from distilens.distill.objectives import Objective, StepTensors
from distilens.models import build_model


class LeafCE(Objective):
    """Frosst & Hinton's path-weighted leaf cross-entropy on one-hot labels (the tree's ``paper_loss``)."""

    name = "leaf_ce"
    needs = frozenset({"inputs", "student"})

    def forward(self, step: StepTensors) -> torch.Tensor:
        onehot = F.one_hot(step.targets, step.student_logits.shape[1]).float()
        return step.student.paper_loss(step.inputs, onehot)


def objectives(spec: str) -> list[Objective]:
    out: list[Objective] = []
    for part in spec.split("+"):
        w, _, rest = part.partition("*") if "*" in part else ("1", "", part)
        kind, _, t = rest.partition("@")
        if kind == "ce":
            out.append(CE(weight=float(w)))
        elif kind == "kd":
            out.append(KD(weight=float(w), temperature=float(t)))
        elif kind == "leafce":
            out.append(LeafCE(weight=float(w)))
        elif kind == "leafkd":
            out.append(LeafKD(weight=float(w), temperature=float(t)))
        else:
            raise ValueError(part)
    return out


def cached_teacher(bundle, seed: int, epochs: int = 15, path: Path | None = None) -> torch.nn.Module:
    """Teacher cnn width 32 as benchmarks/quality.py trains it, kept on disk between sweeps."""
    path = path or Path(f"/tmp/tree/teacher_{seed}.pt")
    torch.manual_seed(seed)
    teacher = build_model("cnn", bundle.spec, width=32)
    if path.exists():
        teacher.load_state_dict(torch.load(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fit(teacher, bundle, epochs=epochs, seed=seed, device="cpu")
        torch.save(teacher.state_dict(), path)
    return teacher


def teacher_cache(seed: int, bundle) -> tuple[SoftLabelCache, float]:
    teacher = cached_teacher(bundle, seed)
    return SoftLabelCache.build(teacher, bundle.train), evaluate_split(teacher, bundle.test)[0]


def shifted_copies(bundle: DataBundle, copies: int, seed: int) -> DataBundle:
    """``bundle`` whose train split also holds ``copies`` jittered copies of every training image."""
    g = torch.Generator().manual_seed(seed)
    x, y = bundle.train.inputs, bundle.train.targets
    out = [x]
    for _ in range(copies):
        shifts = torch.randint(-1, 2, (len(x), 2), generator=g)
        moved = torch.zeros_like(x)
        for (dy, dx) in {tuple(s) for s in shifts.tolist()}:  # one roll per distinct shift
            rows = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().squeeze(1)
            r = torch.roll(x[rows], (dy, dx), dims=(2, 3))
            if dy:  # zero what rolled over the edge
                r[:, :, 0 if dy > 0 else -1, :] = 0
            if dx:
                r[:, :, :, 0 if dx > 0 else -1] = 0
            moved[rows] = r
        out.append(moved + 0.1 * torch.randn(x.shape, generator=g))
    return replace(bundle, train=Split(torch.cat(out), y.repeat(copies + 1)))


def sd(v: list[float]) -> float:
    return statistics.stdev(v) if len(v) > 1 else 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--penalty", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hard", default="ce")
    p.add_argument("--soft", nargs="+", default=["kd@2"])
    p.add_argument("--tag", default="")
    p.add_argument("--copies", type=int, default=4, help="jittered copies per training image for aug: specs")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res: dict[str, list[float]] = {}
    extra: dict[str, list[tuple[float, float]]] = {}
    for seed in a.seeds:
        bundle = load_dataset("builtin:digits", seed=seed)
        cache, tacc = teacher_cache(seed, bundle)
        grown = grown_cache = None
        if any(spec.startswith("aug:") for spec in [a.hard, *a.soft]):
            grown = shifted_copies(bundle, a.copies, seed)
            grown_cache = SoftLabelCache.build(cached_teacher(bundle, seed), grown.train)
        for spec in [a.hard, *a.soft]:
            torch.manual_seed(1000 + seed)
            tree = build_model("soft_tree", bundle.spec, depth=a.depth, penalty=a.penalty, beta_init=a.beta)
            aug = spec.startswith("aug:")
            # Epochs scaled down with the transfer set, so every tree takes the same number of steps.
            fit(tree, grown if aug else bundle, objectives=objectives(spec.removeprefix("aug:")),
                teacher_cache=grown_cache if aug else cache, epochs=max(1, a.epochs // (a.copies + 1)) if aug else a.epochs,
                lr=a.lr, batch_size=a.batch, seed=seed, device="cpu")
            res.setdefault(spec, []).append(evaluate_split(tree, bundle.test)[0])
            with torch.no_grad():
                x, y = bundle.test.inputs, bundle.test.targets
                log_leaf, _ = tree.log_path_probs(x)
                q = F.log_softmax(tree.leaf_logits, 1)
                mix = torch.logsumexp(log_leaf.unsqueeze(2) + q.unsqueeze(0), 1)
                extra.setdefault(spec, []).append(((mix.argmax(1) == y).float().mean().item(),
                                                   (q[log_leaf.argmax(1)].argmax(1) == y).float().mean().item()))
        print(f"seed {seed} {time.perf_counter() - t0:.0f}s teacher {tacc:.3f} "
              + " ".join(f"{k}={v[-1]:.3f}" for k, v in res.items()), file=sys.stderr, flush=True)
    hard = res[a.hard]
    line = {"tag": a.tag, "depth": a.depth, "epochs": a.epochs, "lr": a.lr, "penalty": a.penalty, "beta": a.beta,
            "batch": a.batch, "seeds": a.seeds, "hard": a.hard, "acc": res, "extra": extra}
    print(f"{a.tag} d{a.depth} e{a.epochs} lr{a.lr} pen{a.penalty} beta{a.beta} b{a.batch} "
          f"{time.perf_counter() - t0:.0f}s  {a.hard}: {100 * statistics.mean(hard):.1f}")
    for spec in a.soft:
        d = [100 * (s - h) for s, h in zip(res[spec], hard)]
        print(f"   {spec}: {100 * statistics.mean(res[spec]):.1f} ± {100 * sd(res[spec]):.1f}"
              f"  diff {statistics.mean(d):+.2f} ± {sd(d):.2f}  wins {sum(x > 0 for x in d)}/{len(d)}")
    for spec, v in extra.items():
        mix, amax = zip(*v)
        print(f"   [{spec}] mixture {100 * statistics.mean(mix):.1f}  argmax-path {100 * statistics.mean(amax):.1f}")
    with open("/tmp/tree/results.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
