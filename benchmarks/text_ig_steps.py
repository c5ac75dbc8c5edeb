"""Integrated Gradients on token ids: a fixed 32 steps against ``n_steps="auto"``, side by side.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/text_ig_steps.py [--teacher RUN/teacher.safetensors] \\
        [--csv /work/shared/data/rotten_tomatoes.csv] [--n 32] [--max-length 64] [--repeats 2]

The model is all-MiniLM-L6-v2 (the ``text`` extra): a run folder's fitted teacher with
``--teacher``, else the packaged encoder with a seeded random head. ``--n`` snippets of the
CSV (seeded sample) are explained for the model's predicted class, once with ``n_steps=32``
(the fixed default before) and once with ``"auto"`` (start at 8 Gauss–Legendre steps, double
per text while the completeness error exceeds 1% of |f(x) − f(x′)|, at most 64), alternating
``--repeats`` times; the script prints the median time of each, their ratio, the steps each
text ended with, and each rule's largest completeness error relative to |f(x) − f(x′)|.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import time

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may reach the hub

import torch

from distilens.data.bundle import InputSpec
from distilens.data.tokenize import TextTokenizer
from distilens.explain import attribute, predicted_class
from distilens.explain.tokens import IG_MAX_STEPS, IG_START_STEPS, IG_TOLERANCE, ig_path_gap
from distilens.models import build_model, load_model
from distilens.models.hf import minilm_tokenizer_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--csv", default="/work/shared/data/rotten_tomatoes.csv")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with open(args.csv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in random.Random(0).sample(rows, args.n)]
    tokenizer = TextTokenizer.from_file(minilm_tokenizer_path())
    ids = tokenizer.encode(texts, args.max_length).ids
    if args.teacher:
        model, _ = load_model(args.teacher)
    else:
        torch.manual_seed(0)
        model = build_model("minilm", InputSpec(kind="text", shape=(ids.shape[1],), class_names=("rotten", "fresh")))
    model.eval()
    target = predicted_class(model, ids)
    lengths = (ids != model.pad_id).sum(1).float()
    print(f"{args.n} snippets, {lengths.mean():.1f} tokens on average (max {int(lengths.max())}); threads "
          f"{torch.get_num_threads()}")

    times: dict[str, list[float]] = {"32": [], "auto": []}
    scores: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, steps in (("32", 32), ("auto", "auto")):
            start = time.perf_counter()
            scores[name] = attribute(model, ids, target, "integrated_gradients", n_steps=steps)
            times[name].append(time.perf_counter() - start)

    # attribute() without ``keep`` replaces every non-pad token ([CLS]/[SEP] included) by the pad embedding.
    baseline = torch.where(ids == model.pad_id, ids, torch.full_like(ids, model.pad_id))
    gap = ig_path_gap(model, model.get_input_embeddings(), ids, baseline, target)
    scale = gap.abs().clamp_min(0.1)
    for name in ("32", "auto"):
        error = (scores[name].sum(1) - gap).abs() / scale
        print(f"n_steps={name:>4}: median {statistics.median(times[name]):.1f} s over {args.repeats} runs; "
              f"completeness error / max(|Δf|, 0.1): max {error.max():.2e}, median {error.median():.2e}")
    fixed = {n: attribute(model, ids, target, "integrated_gradients", n_steps=n)
             for n in (IG_START_STEPS, 16, 32, IG_MAX_STEPS)}
    used = [next((n for n, f in fixed.items() if torch.allclose(scores["auto"][i], f[i], rtol=0, atol=1e-5)), -1)
            for i in range(args.n)]
    print(f"auto: steps per text {dict(sorted((n, used.count(n)) for n in set(used)))} (tolerance {IG_TOLERANCE})")
    print(f"time ratio auto / 32 steps: {statistics.median(times['auto']) / statistics.median(times['32']):.2f}")


if __name__ == "__main__":
    main()
