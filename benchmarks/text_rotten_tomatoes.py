"""MiniLM teacher → small text students on Rotten Tomatoes: labels vs KD, transfer copies, teacher-initialised embeddings.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/text_rotten_tomatoes.py \\
        [--data /work/shared/data/rotten_tomatoes.csv] [--seeds 3] [--max-length 64] [--cache /work/bench-text] \\
        [--teacher-finetune head|all] [--transfer-copies K] [--only STUDENT ...]

The teacher is all-MiniLM-L6-v2 (the ``text`` extra). ``--teacher-finetune head`` (default)
fits a linear head on its frozen, mean-pooled embeddings; ``all`` fine-tunes the whole
encoder with distilens' ``fit`` (AdamW, lr 3e-5, 3 epochs, batch 32; best validation epoch),
its weights kept in ``--cache``. Then the encoder runs ONCE over all rows: pooled
embeddings and, for the training rows, the head-averaged last-layer attention (fp16),
kept in ``--cache`` and reused by later runs.

Students, each trained with ``--seeds`` seeds (test accuracy mean ± std over seeds):
``embedding_bag`` (with and without hashed bigrams), ``text_cnn``, ``bilstm`` and a d=32
``tiny_transformer_words`` on a word-level vocabulary; ``tiny_transformer`` (d=64) on the
teacher's WordPiece ids (needed by attention_kd); with ``--only minilm_l3`` (and
``--teacher-finetune all``) the layer-truncated teacher: MiniLM with 3 of its 6 layers,
started from the fine-tuned teacher's layers 0, 2 and 4 (``student.init: teacher_layers``). Each with labels only (CE), KD (kd T=4 +
0.1·ce, distilens' default), for the WordPiece transformer KD + attention_kd (heads=1), and
with ``--transfer-copies K`` also on the training texts plus up to K perturbed copies of
each (``distill.transfer_copies``; ``--transfer-method drop`` as in round 2 or ``tang``, Tang
et al.'s mask / same-class replacement / n-gram window): ``labels+copies`` (the source's
label) and ``kd+copies`` (the teacher labels the copies); ``--modes`` and ``--copies-epochs``
pick modes and the +copies epochs. ``--modes kd+hint1 kd+hint10`` (opt-in) add FitNets hints
(weight 1 or 10) from the student's pooled features to the teacher's pooled embedding.
``--init teacher_embeddings`` starts every student's token table from the teacher's input
embeddings (``models/text_init.py``).
``--teacher-finetune none`` trains no teacher: label modes only, the packaged MiniLM's
table for ``--init``. ``--explain N``: word-level IG agreement with the teacher
(Spearman, top-20% IoU over words) of each mode's seed-0 student on N test snippets.
Cost: parameters, median forward latency at batch 1 and 64 (L = the data's length, one
thread). ``--reference``: TF-IDF + logistic regression, C chosen on val (``reference.py``).
``--latency``: only the latency of the teacher and every student, measured interleaved.
Results go to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from distilens.data import DataBundle, load_dataset
from distilens.data.tokenize import TextTokenizer
from distilens.distill import CE, KD, AttentionKD, Hint, SoftLabelCache, fit, fit_teacher
from distilens.data.text_augment import mask_placeholder, tang_copies, with_transfer_copies
from distilens.distill.teacher_fit import encode_split, teacher_bundle
from distilens.evaluate import cost_metrics, measure_latencies, measure_latency
from distilens.explain import attribute, special_token_mask, word_agreement
from distilens.models import build_model, count_params
from distilens.models.hf import minilm_tokenizer_path
from distilens.models.layer_init import init_layers_from_teacher
from distilens.models.tap import group_heads
from distilens.models.text_init import init_embeddings_from_teacher
from distilens.reference import tfidf_logreg

HINT_WEIGHTS = (1.0, 10.0)  # kd+hint modes, opt-in through --modes
NEST = 20  # tang copies: a labelled 20-copy set also labels the 4- and 10-copy sets
STUDENTS: dict[str, dict[str, Any]] = {  # arch, args, ids ("word" | "teacher"), lr, epochs
    "embedding_bag": {"arch": "embedding_bag", "args": {"dim": 32}, "ids": "word", "lr": 3e-3, "epochs": 15},
    "embedding_bag_bigrams": {"arch": "embedding_bag", "args": {"dim": 32, "ngrams": 2, "buckets": 4096}, "ids": "word",
                             "lr": 3e-3, "epochs": 15},
    "text_cnn": {"arch": "text_cnn", "args": {"dim": 32, "maps": 64}, "ids": "word", "lr": 3e-3, "epochs": 10},
    "bilstm": {"arch": "bilstm", "args": {"dim": 32, "hidden": 64, "mlp": 64}, "ids": "word", "lr": 3e-3, "epochs": 10},
    "bilstm_last": {"arch": "bilstm", "args": {"dim": 32, "hidden": 64, "mlp": 64, "pooling": "last"}, "ids": "word",
                    "lr": 3e-3, "epochs": 10},
    "tiny_transformer_words": {"arch": "tiny_transformer", "args": {"dim": 32, "layers": 2, "heads": 4}, "ids": "word",
                               "lr": 1e-3, "epochs": 8},
    "tiny_transformer": {"arch": "tiny_transformer", "args": {"dim": 64, "layers": 2, "heads": 4}, "ids": "teacher",
                         "lr": 1e-3, "epochs": 8},
    # the layer-truncated teacher (DistilBERT-style), started from the fine-tuned teacher's layers 0, 2, 4
    # (student.init: teacher_layers); only with --teacher-finetune all, and only when named in --only
    "minilm_l3": {"arch": "minilm", "args": {"finetune": "all", "layers": 3}, "ids": "teacher", "lr": 5e-5, "epochs": 2,
                  "init": "teacher_layers", "opt_in": True},
}


@torch.no_grad()
def encode_once(teacher: torch.nn.Module, bundle: DataBundle, path: Path, batch: int = 128) -> dict[str, Tensor]:
    """Pooled MiniLM embeddings of every split and the train split's head-mean last-layer attention, cached in ``path``."""
    if path.is_file():
        return load_file(str(path))
    tensors: dict[str, Tensor] = {}
    t0, rows = time.perf_counter(), 0
    teacher.eval()
    for name in ("train", "val", "test"):
        ids_all = getattr(bundle.for_teacher(), name).inputs
        n, length = ids_all.shape
        lengths = (ids_all != teacher.pad_id).sum(1)
        # Rows sorted by length, each batch cut to its longest row: trailing pads change nothing
        # under the mask (bar float rounding), and most snippets are far shorter than L.
        order = torch.argsort(lengths, descending=True, stable=True)
        features = torch.zeros(n, teacher.head.in_features)
        attention = torch.zeros(n, 1, length, length, dtype=torch.float16) if name == "train" else None
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            width = int(lengths[idx].max())
            ids = ids_all[idx, :width]
            mask = ids != teacher.pad_id
            enc = teacher.encoder(input_ids=ids, attention_mask=mask.long(), output_attentions=attention is not None)
            w = mask.unsqueeze(-1).float()
            features[idx] = (enc.last_hidden_state * w).sum(1) / w.sum(1).clamp_min(1e-9)
            if attention is not None:  # (B, 12, l, l) -> (B, 1, l, l), padded keys exactly 0
                attention[idx, :, :width, :width] = group_heads(enc.attentions[-1] * mask[:, None, None, :], 1).half()
            rows += ids.shape[0]
            if (start // batch) % 10 == 0:
                print(f"  encoding {name}: {start + len(idx)}/{n} ({rows / (time.perf_counter() - t0):.1f} snippets/s)", flush=True)
        tensors[f"features/{name}"] = features
        if attention is not None:
            tensors["attention/train"] = attention
    seconds = time.perf_counter() - t0
    tensors["encode_rate"] = torch.tensor([rows / seconds])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return tensors


def finetuned_teacher(wordpiece: DataBundle, path: Path, epochs: int, lr: float, batch: int) -> tuple[torch.nn.Module, float]:
    """MiniLM with all of it fine-tuned (``finetune: all``) by :func:`fit`, and the fit's seconds; weights cached in ``path``.

    The fit writes a checkpoint beside ``path`` after every epoch and resumes from it, so a
    fine-tune stopped part-way (it takes most of an hour on a shared CPU) loses one epoch at
    most; the checkpoint is removed once the weights are saved. ``fit_s`` counts this
    process's seconds only when it resumed.
    """
    torch.manual_seed(0)
    teacher = build_model("minilm", wordpiece.spec, finetune="all")
    if path.is_file():
        state = load_file(str(path))
        teacher.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("state/")})
        print(f"fine-tuned teacher loaded from {path} (fit {float(state['fit_s']):.0f}s, best epoch "
              f"{int(state['best_epoch'])})")
        return teacher.eval(), float(state["fit_s"])
    t0 = time.perf_counter()
    checkpoint = path.with_name(path.name.replace(".safetensors", "-checkpoint.pt"))
    path.parent.mkdir(parents=True, exist_ok=True)
    result = fit(teacher, wordpiece, epochs=epochs, lr=lr, batch_size=batch, weight_decay=0.01, warmup_epochs=0.1,
                 seed=0, device="cpu", on_epoch=lambda m: print(f"  teacher epoch: {m}", flush=True),
                 checkpoint_path=checkpoint, resume=True)
    if result.resumed_from:
        print(f"  (resumed at epoch {result.resumed_from}: fit_s counts this process only)")
    tensors = {"fit_s": torch.tensor([time.perf_counter() - t0]), "best_epoch": torch.tensor([float(result.best_epoch)])}
    tensors.update({f"state/{k}": v.contiguous() for k, v in teacher.state_dict().items()})
    save_file(tensors, str(path))
    checkpoint.unlink(missing_ok=True)
    return teacher.eval(), float(tensors["fit_s"])


class WordAgreement:
    """Word-level IG agreement with the teacher on ``n`` test snippets (half per class, seeded).

    The teacher's Integrated Gradients (32 steps, for its predicted class) are computed once
    and kept in ``path``; each student is explained for the same class on its own ids, and
    both sides' token scores are summed per word of the raw text (``word_agreement``).
    """

    def __init__(self, teacher: torch.nn.Module, bundle: DataBundle, t_test: Tensor, n: int, path: Path) -> None:
        g = torch.Generator().manual_seed(0)
        y = bundle.test.targets
        self.rows = torch.cat([c.nonzero().squeeze(1)[torch.randperm(int(c.sum()), generator=g)[: n // 2]]
                               for c in (y == 0, y == 1)])
        self.texts = [bundle.texts["test"][i] for i in self.rows.tolist()]
        self.target = t_test.argmax(1)[self.rows]
        self.t_enc = bundle.teacher_view.tokenizer.encode(self.texts, bundle.teacher_view.spec.shape[0], pad_to_max=True)
        if path.is_file():
            self.t_attr = load_file(str(path))["attributions"]
        else:
            t0 = time.perf_counter()
            self.t_attr = self._attribute(teacher, self.t_enc)
            print(f"teacher IG on {len(self.rows)} snippets: {time.perf_counter() - t0:.0f}s")
            save_file({"attributions": self.t_attr}, str(path))

    def _attribute(self, model: torch.nn.Module, enc: Any) -> Tensor:
        keep = special_token_mask(enc.offsets, enc.ids.shape[1])
        return attribute(model, enc.ids, self.target, "integrated_gradients", keep=keep, n_steps=32).cpu()

    def __call__(self, student: torch.nn.Module, tokenizer: TextTokenizer, length: int) -> dict[str, float]:
        enc = tokenizer.encode(self.texts, length, pad_to_max=True)
        s_attr = self._attribute(student, enc)
        scores = [word_agreement(t, self.t_enc.offsets[i], self.t_attr[i], enc.offsets[i], s_attr[i])
                  for i, t in enumerate(self.texts)]
        return {k: statistics.mean(x[k] for x in scores if x[k] == x[k]) for k in ("spearman", "topk_iou")}


def mean_std(values: list[float]) -> str:
    if any(v != v for v in values):  # nan: no teacher to agree with
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


@dataclass
class Teacher:
    """The teacher's side of a benchmark run (``model`` only, for its embeddings, with ``--teacher-finetune none``)."""

    model: torch.nn.Module
    t_train: Tensor | None = None
    t_test: Tensor | None = None
    cache: SoftLabelCache | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def build_teacher(args: argparse.Namespace, bundle: DataBundle, wordpiece: DataBundle, key: str) -> Teacher:
    """Fine-tune (or load) the teacher, encode every row once, label the training rows; or the bare packaged MiniLM."""
    if args.teacher_finetune == "none":  # labels-only runs: the packaged encoder's embedding table, nothing trained
        torch.manual_seed(0)
        return Teacher(build_model("minilm", wordpiece.spec, finetune="head").eval())
    if args.teacher_finetune == "all":
        tag = f"all-e{args.teacher_epochs}-lr{args.teacher_lr:g}"
        teacher, teacher_fit_s = finetuned_teacher(wordpiece, Path(args.cache) / f"minilm-{tag}-{key}-weights.safetensors",
                                                   args.teacher_epochs, args.teacher_lr, 32)
        enc = encode_once(teacher, bundle, Path(args.cache) / f"minilm-{tag}-{key}.safetensors")
    else:
        torch.manual_seed(0)
        teacher = build_model("minilm", wordpiece.spec, finetune="head")
        enc = encode_once(teacher, bundle, Path(args.cache) / f"minilm-{key}.safetensors")
        t0 = time.perf_counter()
        fit_teacher(teacher, wordpiece, features={"train": enc["features/train"], "val": enc["features/val"]},
                    epochs=30, lr=3e-3, batch_size=64, seed=0, device="cpu")
        teacher_fit_s = time.perf_counter() - t0
    print(f"MiniLM encoding: {float(enc['encode_rate']):.0f} snippets/s (cached in {args.cache})")
    with torch.no_grad():
        t_test = teacher.head(enc["features/test"])
        t_train = teacher.head(enc["features/train"])
    teacher_acc = float((t_test.argmax(1) == bundle.test.targets).float().mean())
    # MiniLM at batch 64 × L takes seconds per call on a busy CPU: 5 timed calls, not cost_metrics' 30.
    t_cost = {"params": count_params(teacher), "latency_ms": measure_latency(teacher, wordpiece.spec, repeats=5, warmup=1)}
    print(f"teacher: test accuracy {100 * teacher_acc:.1f}%, fit {teacher_fit_s:.1f}s, {t_cost['params']} params, "
          f"latency b1 {t_cost['latency_ms']['batch1']:.1f} ms, b64 {t_cost['latency_ms']['batch64']:.1f} ms")
    # the teacher's pooled embedding per training text: the target of the opt-in kd+hint modes
    cache = SoftLabelCache(t_train, f"bench-{key}",
                           features={"attention:1": enc["attention/train"].float(), "pooled": enc["features/train"]})
    summary = {"accuracy": teacher_acc, "params": t_cost["params"], "latency_ms": t_cost["latency_ms"],
               "fit_s": teacher_fit_s, "encode_snippets_per_s": float(enc["encode_rate"])}
    return Teacher(teacher, t_train, t_test, cache, summary)


def transfer_set(args: argparse.Namespace, bundle: DataBundle, teacher: Teacher, key: str
                 ) -> tuple[dict[str, DataBundle], SoftLabelCache | None]:
    """The training texts plus ``--transfer-copies`` copies (word and WordPiece views), and the teacher's labels of them."""
    options = {"method": args.transfer_method}
    grown = {"word": with_transfer_copies(bundle, args.transfer_copies, seed=0, **options)}  # type: ignore[arg-type]
    grown["teacher"] = teacher_bundle(grown["word"])
    extra = grown["teacher"].train.subset(torch.arange(len(bundle.train), len(grown["teacher"].train)))
    print(f"transfer set ({args.transfer_method}): {len(bundle.train)} texts + {len(extra)} copies")
    if teacher.t_train is None:
        return grown, None
    method = "" if args.transfer_method == "drop" else f"-{args.transfer_method}"  # round 2's file names for drop
    copies_path = Path(args.cache) / f"minilm-{args.teacher_finetune}-copies{args.transfer_copies}{method}-{key}.safetensors"
    nested = Path(args.cache) / f"minilm-{args.teacher_finetune}-copies{NEST}{method}-{key}.safetensors"
    if copies_path.is_file():
        extra_logits = load_file(str(copies_path))["logits"]
    elif args.transfer_method == "tang" and args.transfer_copies < NEST and nested.is_file():
        # Tang copies nest in K (data/text_augment.py): the first K of each text's 20 are these.
        mask = mask_placeholder(bundle.for_teacher().tokenizer, "mask")
        row = {c.render(mask): j for j, c in enumerate(tang_copies(bundle.texts["train"], NEST, seed=0))}
        mine = [row[c.render(mask)] for c in tang_copies(bundle.texts["train"], args.transfer_copies, seed=0)]
        extra_logits = load_file(str(nested))["logits"][mine]
        print(f"teacher labels of the {len(mine)} copies taken from the {NEST}-copy set ({nested.name})")
    else:
        t0 = time.perf_counter()
        with torch.no_grad():
            extra_logits = teacher.model.head(encode_split(teacher.model, extra, 128))
        print(f"teacher labelled {len(extra)} copies in {time.perf_counter() - t0:.0f}s")
        save_file({"logits": extra_logits}, str(copies_path))
    return grown, SoftLabelCache(torch.cat([teacher.t_train, extra_logits]), f"bench-{key}-copies{method}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/rotten_tomatoes.csv")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed … first-seed + seeds − 1")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-vocab", type=int, default=10000)
    parser.add_argument("--cache", default="/work/bench-text",
                        help="teacher weights, encodings and copy labels, kept across runs (outside the repo)")
    parser.add_argument("--only", nargs="*", default=None, help="student names to run (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="override every student's epochs")
    parser.add_argument("--teacher-finetune", choices=("head", "all", "none"), default="head",
                        help="head: a linear head on the frozen encoder; all: fine-tune the whole encoder; none: no "
                             "teacher (label modes only; the packaged MiniLM gives --init its embeddings)")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="epochs of --teacher-finetune all")
    parser.add_argument("--teacher-lr", type=float, default=3e-5, help="peak lr of --teacher-finetune all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", nargs="*", default=None, help="modes to run (default: all)")
    parser.add_argument("--copies-epochs", type=int, default=None,
                        help="epochs of the +copies modes (default: the student's; the transfer set is ~4x larger)")
    parser.add_argument("--explain", type=int, default=0,
                        help="word-level IG agreement with the teacher of each mode's seed-0 student on N test snippets")
    parser.add_argument("--out", default="benchmarks/results/text_rotten_tomatoes.json",
                        help="results JSON (students of an earlier file are kept unless rerun)")
    parser.add_argument("--transfer-copies", type=int, default=0,
                        help="also train each student on K perturbed copies per training text (Tang et al. 2019): "
                             "labels+copies (the source's label) and kd+copies (the teacher's outputs)")
    parser.add_argument("--transfer-method", choices=("drop", "tang"), default="drop",
                        help="drop: words left out + a window (round 2); tang: mask / same-class replacement / window")
    parser.add_argument("--init", choices=("random", "teacher_embeddings"), default="random",
                        help="the students' token embeddings: random, or from the teacher's (models/text_init.py)")
    parser.add_argument("--reference", action="store_true", help="also fit the TF-IDF + LR reference (reference.py)")
    parser.add_argument("--latency", action="store_true",
                        help="only measure batch-1 / batch-64 latency of the teacher and every student, interleaved "
                             "(untrained weights: latency does not depend on them), on an idle machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tok = TextTokenizer.from_file(minilm_tokenizer_path())
    bundle = load_dataset(f"csv:{args.data}", text="text", target="label", seed=0, max_length=args.max_length,
                          tokenizer="word", max_vocab=args.max_vocab, teacher_tokenizer=tok)
    wordpiece = teacher_bundle(bundle)  # the same rows, the teacher's ids: what tiny_transformer reads
    print(f"data: {bundle.sizes()}, word L={bundle.spec.shape[0]} vocab={bundle.spec.vocab_size}, "
          f"wordpiece L={wordpiece.spec.shape[0]}")
    results: dict[str, Any] = {"students": {}}
    if args.latency:
        results["latency"] = latency_table(bundle, wordpiece)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        return
    if args.reference:
        ref = tfidf_logreg(bundle.texts["train"], bundle.train.targets, bundle.texts["val"], bundle.val.targets,
                           bundle.texts["test"], bundle.test.targets)
        print(f"reference: TF-IDF 1-2 grams + LR, C={ref['C']:g} (val {100 * ref['val_accuracy']:.1f}%): "
              f"test {100 * ref['test_accuracy']:.1f}% ({ref['seconds']:.0f}s)")
        results["reference"] = ref

    key = hashlib.sha256((wordpiece.train.fingerprint() + wordpiece.test.fingerprint()).encode()).hexdigest()[:16]
    teacher = build_teacher(args, bundle, wordpiece, key)
    results["teacher"] = teacher.summary
    grown, grown_cache = transfer_set(args, bundle, teacher, key) if args.transfer_copies else ({}, None)
    explain = None
    if args.explain and teacher.t_test is not None:
        tag = args.teacher_finetune if args.teacher_finetune == "head" else f"all-e{args.teacher_epochs}"
        explain = WordAgreement(teacher.model, bundle, teacher.t_test, args.explain,
                                Path(args.cache) / f"minilm-{tag}-ig{args.explain}-{key}.safetensors")
    for name, s in STUDENTS.items():
        if name not in (args.only or [n for n, t in STUDENTS.items() if not t.get("opt_in")]):
            continue
        if s.get("init") == "teacher_layers" and args.teacher_finetune != "all":
            raise SystemExit(f"{name} starts from the fine-tuned teacher's layers: pass --teacher-finetune all")
        data = wordpiece if s["ids"] == "teacher" else bundle
        modes = {"labels": [CE()], "kd": [KD(temperature=4.0), CE(weight=0.1)]}
        if s["arch"] == "tiny_transformer" and s["ids"] == "teacher":  # attention_kd: the same token sequences
            modes["kd+attention_kd"] = [KD(temperature=4.0), CE(weight=0.1), AttentionKD(weight=1.0, heads=1)]
        for w in HINT_WEIGHTS:  # opt-in (--modes kd+hint1 ...): FitNets on the pooled features, Linear(D_s, 384)
            if args.modes and f"kd+hint{w:g}" in args.modes:
                modes[f"kd+hint{w:g}"] = [KD(temperature=4.0), CE(weight=0.1), Hint(weight=w, teacher_layer="pooled")]
        if grown:  # labels / kd only: attention_kd has no teacher attention for the copies
            modes.update({"labels+copies": modes["labels"], "kd+copies": modes["kd"]})
        if teacher.cache is None:
            modes = {m: o for m, o in modes.items() if m.startswith("labels")}
        for mode, objectives in modes.items():
            if args.modes and mode not in args.modes:
                continue
            epochs = args.copies_epochs if mode.endswith("+copies") and args.copies_epochs else args.epochs or s["epochs"]
            train_data = grown[s["ids"]] if mode.endswith("+copies") else data
            mode_cache = None if mode.startswith("labels") else grown_cache if mode.endswith("+copies") else teacher.cache
            row_name = f"{name}{'+init' if args.init != 'random' else ''}/" + mode.replace(
                "+copies", f"+copies{args.transfer_copies}{'' if args.transfer_method == 'drop' else '-' + args.transfer_method}")
            row = train_students(args, s, data, train_data, objectives, mode_cache, epochs, teacher, explain, row_name)
            results["students"][row_name] = row
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file():  # runs with --only add their students to the earlier ones
        earlier = json.loads(out.read_text(encoding="utf-8"))
        results = {**earlier, **{k: v for k, v in results.items() if v}, "students": {**earlier["students"], **results["students"]}}
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def latency_table(bundle: DataBundle, wordpiece: DataBundle) -> dict[str, Any]:
    """Forward latency of the MiniLM teacher and every student at batch 1 and 64, measured interleaved.

    Each model reads its own full-length input (L = 63 words or 64 WordPiece ids), in the
    same rounds (:func:`measure_latencies`), so a burst of load hits all alike; the speed-up
    is the teacher's median over the model's.
    """
    torch.manual_seed(0)
    models = {"teacher (MiniLM-L6)": (build_model("minilm", wordpiece.spec, finetune="all").eval(), wordpiece.spec)}
    for name, s in STUDENTS.items():
        data = wordpiece if s["ids"] == "teacher" else bundle
        models[name] = (build_model(s["arch"], data.spec, **s["args"]).eval(), data.spec)
    lat = measure_latencies(models, rounds=40, budget_s=60.0)
    teacher = lat["models"]["teacher (MiniLM-L6)"]["latency_ms"]
    for name, m in lat["models"].items():
        ms, iqr = m["latency_ms"], m["latency_iqr_ms"]
        m["params"] = count_params(models[name][0])
        m["speedup_batch1"] = teacher["batch1"] / ms["batch1"]
        print(f"{name:26s} {m['params']:>12,} params  b1 {ms['batch1']:8.2f} ms [{iqr['batch1'][0]:.2f}, "
              f"{iqr['batch1'][1]:.2f}] ({m['speedup_batch1']:5.1f}x)  b64 {ms['batch64']:9.2f} ms", flush=True)
    return lat


def train_students(args: argparse.Namespace, s: dict[str, Any], data: DataBundle, train_data: DataBundle,
                   objectives: list[torch.nn.Module], cache: SoftLabelCache | None, epochs: int, teacher: Teacher,
                   explain: "WordAgreement | None", row_name: str) -> dict[str, Any]:
    """Train one student configuration for ``--seeds`` seeds; print and return its row."""
    accs, agrees, times, words, init = [], [], [], None, None
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        torch.manual_seed(seed)
        student = build_model(s["arch"], data.spec, **s["args"])
        if s.get("init") == "teacher_layers":
            init = init_layers_from_teacher(student, teacher.model)
        elif args.init == "teacher_embeddings":
            t_tok = data.tokenizer if s["ids"] == "teacher" else data.for_teacher().tokenizer
            init = init_embeddings_from_teacher(student, teacher.model, data.tokenizer, t_tok)
        objs = [type(o)(**_options(o)) for o in objectives]  # fresh modules per seed
        t0 = time.perf_counter()
        fit(student, train_data, objectives=objs, teacher_cache=cache,
            epochs=epochs, lr=s["lr"], batch_size=64, warmup_epochs=0.5, seed=seed, device="cpu")
        times.append(time.perf_counter() - t0)
        with torch.no_grad():
            pred = student(data.test.inputs).argmax(1)
        accs.append(float((pred == data.test.targets).float().mean()))
        if explain is not None and seed == args.first_seed:
            words = explain(student, data.tokenizer, data.spec.shape[0])
            print(f"  {row_name} seed {seed}: word-level IG agreement {words}")
        agrees.append(float((pred == teacher.t_test.argmax(1)).float().mean()) if teacher.t_test is not None else float("nan"))
        print(f"  {row_name} seed {seed}: {100 * accs[-1]:.1f}% (agreement {100 * agrees[-1]:.1f}%, {times[-1]:.0f}s)",
              flush=True)
    cost = cost_metrics(student, data.spec)
    t_params = teacher.summary.get("params", count_params(teacher.model))
    t_b1 = teacher.summary.get("latency_ms", {}).get("batch1", float("nan"))
    print(f"{row_name:32s} acc {mean_std(accs)}  agree {mean_std(agrees)}  params {cost['params']:,} "
          f"({t_params / cost['params']:.0f}× fewer)  b1 {cost['latency_ms']['batch1']:.2f} ms "
          f"({t_b1 / cost['latency_ms']['batch1']:.0f}× faster)  b64 {cost['latency_ms']['batch64']:.2f} ms", flush=True)
    return {"epochs": epochs, "accuracy": accs, "agreement": agrees, "train_s": times, "params": cost["params"],
            "latency_ms": cost["latency_ms"], "init": init, "transfer_set": len(train_data.train),
            **({"word_ig_agreement_seed0": words} if words is not None else {})}


def _options(objective: torch.nn.Module) -> dict[str, Any]:
    """The constructor options of a KD / CE / AttentionKD / Hint objective (to build a fresh one)."""
    if isinstance(objective, KD):
        return {"weight": objective.weight, "temperature": objective.temperature}
    if isinstance(objective, AttentionKD):
        return {"weight": objective.weight, "heads": objective.heads}
    if isinstance(objective, Hint):
        return {"weight": objective.weight, "student_layer": objective.student_layer, "teacher_layer": objective.teacher_layer}
    return {"weight": objective.weight}


if __name__ == "__main__":
    main()
