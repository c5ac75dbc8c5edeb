"""Which student is the text default? embedding_bag vs text_cnn trained on labels alone.

Both at their zoo defaults, the same data split (seed 0), the same epochs, batch size and
learning rate (the distillation defaults: AdamW, lr 1e-2); prints test accuracy, parameters
and training time. Needs the rotten_tomatoes CSV (text, label columns); one thread.

    OMP_NUM_THREADS=1 python benchmarks/text_students.py /work/shared/data/rotten_tomatoes.csv --epochs 5
"""

from __future__ import annotations

import argparse
import time

import torch

from distilens.data import load_dataset
from distilens.distill import fit
from distilens.evaluate import accuracy, predict_logits
from distilens.models import build_model, count_params
from distilens.runtime import seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--archs", nargs="+", default=["embedding_bag", "text_cnn"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_dataset(f"csv:{args.csv}", text="text", target="label", seed=0)
    for arch in args.archs:
        seed_everything(1)
        model = build_model(arch, bundle.spec)
        wall, cpu = time.time(), time.process_time()
        fit(model, bundle, epochs=args.epochs, batch_size=64, lr=1e-2, weight_decay=1e-4, seed=1)
        acc = accuracy(predict_logits(model, bundle.test), bundle.test.targets)
        print(
            f"{arch}: test accuracy {acc:.4f}, params {count_params(model)}, "
            f"train cpu {time.process_time() - cpu:.0f} s, wall {time.time() - wall:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
