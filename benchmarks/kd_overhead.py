"""Epoch time of distillation relative to label-only training, for the same student and data.

    PYTHONPATH=src python benchmarks/kd_overhead.py [--repeats 5] [--epochs 3] [--threads 1]

Three ways to train the student (cnn width 8 on digits), interleaved repeat by repeat so
that machine load hits them alike: labels only (CE); KD from the SoftLabelCache (teacher
logits computed once, the default); KD with the teacher (cnn width 64) run on every batch
("online"). Prints, per mode, the fastest and the median per-epoch time
(fit() set-up and the validation pass included) and two ratios to label-only: of the
fastest repeats (the least disturbed by other load: the headline) and the median of the
paired per-repeat ratios (cached goal: ≤ ~1.05). The teacher is untrained: its weights do not change the cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

from distilens.data import Split, load_dataset
from distilens.distill import CE, KD, SoftLabelCache, fit
from distilens.models import build_model


class OnlineTeacher:
    """Duck-types SoftLabelCache's serving side: runs the teacher on the batch's samples."""

    def __init__(self, teacher: nn.Module, split: Split) -> None:
        self.teacher, self.inputs = teacher.eval(), split.inputs

    def to(self, device: str | torch.device) -> "OnlineTeacher":
        self.teacher.to(device)
        self.inputs = self.inputs.to(device)
        return self

    @torch.no_grad()
    def __getitem__(self, index: Tensor) -> Tensor:
        return self.teacher(self.inputs[index.to(self.inputs.device)]).float()

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_samples(self) -> int:
        return len(self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_dataset("builtin:digits", seed=0)
    torch.manual_seed(0)
    teacher = build_model("cnn", bundle.spec, width=64)
    cache = SoftLabelCache.build(teacher, bundle.train)
    online = OnlineTeacher(teacher, bundle.train)
    modes = {
        "label-only": ([CE()], None),
        "cached KD": ([KD(temperature=4.0), CE(weight=0.1)], cache),
        "online KD": ([KD(temperature=4.0), CE(weight=0.1)], online),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode, (objectives, source) in modes.items():
            torch.manual_seed(1)
            student = build_model("cnn", bundle.spec, width=8)
            t0 = time.perf_counter()
            fit(student, bundle, objectives=objectives, teacher_cache=source, epochs=args.epochs, device="cpu")
            times[mode].append((time.perf_counter() - t0) / args.epochs)
    base = times["label-only"]
    print(f"digits, student cnn width 8, teacher cnn width 64, {args.epochs} epochs x {args.repeats} repeats, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    for mode, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base)]
        print(f"{mode:>11}: fastest {min(ts) * 1000:6.1f} ms/epoch, median {statistics.median(ts) * 1000:6.1f}; "
              f"ratio to label-only: fastest {min(ts) / min(base):.3f}, paired median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
