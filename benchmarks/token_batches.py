"""Labelling text with a transformer teacher: full-length batches vs batches sorted by length and cut.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/token_batches.py [--texts 400] [--copies 4] [--repeats 2]

MiniLM (the packaged all-MiniLM-L6-v2 with a random head: the cost does not depend on its
weights) labels the first ``--texts`` Rotten Tomatoes snippets and ``--copies`` Tang copies of
each (``data/text_augment.py``), at L = 64 WordPiece ids, batch 512 — what
``SoftLabelCache.build`` does for a run with ``distill.transfer_copies``. Two ways, alternated
``--repeats`` times in one process: every batch at the full length L (the old build), and
``data.bundle.map_by_length`` (rows sorted by length, each batch cut to its longest row, the new
build). Prints the median seconds of each, their ratio, the mean real length, and the largest
difference between the two ways' logits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from distilens.data import load_dataset
from distilens.data.bundle import map_by_length
from distilens.data.text_augment import mask_placeholder, tang_copies
from distilens.data.tokenize import TextTokenizer
from distilens.distill.teacher_fit import teacher_bundle
from distilens.models import build_model
from distilens.models.hf import minilm_tokenizer_path


@torch.no_grad()
def full_length(model: torch.nn.Module, ids: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([model(x) for x in ids.split(batch)])


@torch.no_grad()
def cut(model: torch.nn.Module, ids: torch.Tensor, batch: int) -> torch.Tensor:
    return map_by_length(model, ids, model.pad_id, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/rotten_tomatoes.csv")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()

    tok = TextTokenizer.from_file(minilm_tokenizer_path())
    bundle = load_dataset(f"csv:{args.data}", text="text", target="label", seed=0, max_length=64, tokenizer="word",
                          max_vocab=10000, teacher_tokenizer=tok)
    texts = bundle.texts["train"][: args.texts]
    mask = mask_placeholder(tok, "mask")
    rows = texts + [c.render(mask) for c in tang_copies(texts, args.copies, seed=0)]
    ids = tok.encode(rows, 64, pad_to_max=True).ids
    torch.manual_seed(0)
    model = build_model("minilm", teacher_bundle(bundle).spec, finetune="head").eval()
    real = (ids != model.pad_id).sum(1).float()
    print(f"{len(ids)} rows ({args.texts} texts + copies), L = {ids.shape[1]}, real tokens: mean {real.mean():.1f}, "
          f"median {real.median():.0f}; {torch.get_num_threads()} thread(s)")
    times: dict[str, list[float]] = {"full length": [], "by length": []}
    outs = {}
    for _ in range(args.repeats):
        for name, fn in (("full length", full_length), ("by length", cut)):
            t0 = time.perf_counter()
            outs[name] = fn(model, ids, args.batch)
            times[name].append(time.perf_counter() - t0)
    full, fast = (statistics.median(times[k]) for k in ("full length", "by length"))
    diff = float((outs["full length"] - outs["by length"]).abs().max())
    print(f"full length {full:.1f}s, by length {fast:.1f}s: {full / fast:.2f}x faster; max |logit difference| {diff:.2e}")


if __name__ == "__main__":
    main()
