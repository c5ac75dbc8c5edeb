"""Teacher vs student on the same texts, word by word, even when their tokenizers differ.

Both models' token scores are summed into the same :func:`~.text.words` of each raw text
(character offsets decide which word a token belongs to), then compared with the image
path's agreement scores (:mod:`.agreement`) on the words both tokenizations cover.
:func:`explain_text_models` is the text explain stage: the ``explanations`` block for
metrics.json and the report payload (saved as ``explanations/text.json``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from torch import Tensor, nn

from ..errors import DistilensError
from ..io import atomic_write_json
from .agreement import agreement_scores
from .attribute import eval_mode
from .compare import Comparison
from .stage import applicable_methods, stratified_indices
from .text import TEXT_EXPLAINERS, _sum_into_words, attribute_text, text_inapplicable_reason, words

__all__ = ["EncodedLike", "word_agreement", "attribute_rows", "explain_text_models", "save_text_explanations", "TEXT_PAYLOAD"]

#: Where the report payload lives in a run folder.
TEXT_PAYLOAD = Path("explanations") / "text.json"


class EncodedLike(Protocol):
    """What :func:`explain_text_models` needs of ``distilens.data.tokenize.Encoded``."""

    ids: Tensor
    offsets: list[list[tuple[int, int]]]


def word_agreement(
    text: str,
    teacher_offsets: Sequence[tuple[int, int]],
    teacher_scores: Tensor,
    student_offsets: Sequence[tuple[int, int]],
    student_scores: Tensor,
    topk: float = 0.2,
) -> dict[str, float]:
    """Agreement of two models' token scores on one text, compared on its words.

    Each side's tokens are summed into :func:`words` (``text``) by character offsets; the
    words both sides cover (truncation may cut one side shorter) are scored with
    :func:`~.agreement.agreement_scores`: ``spearman``, ``kendall``, ``pearson``,
    ``topk_iou`` (top ``topk`` fraction of the words) and ``cosine``. Undefined scores (a
    constant map, no common word) are NaN.

    Args:
        text: The raw text.
        teacher_offsets, student_offsets: Each tokenizer's character spans of the non-pad tokens.
        teacher_scores, student_scores: (L_t,), (L_s,) token scores.

    Example:
        >>> word_agreement(text, t_enc.offsets[0], t_attr[0], s_enc.offsets[0], s_attr[0])["spearman"]
    """
    spans = words(text)
    t, t_cov = _sum_into_words(spans, teacher_offsets, teacher_scores)
    s, s_cov = _sum_into_words(spans, student_offsets, student_scores)
    return {k: float(v[0]) for k, v in _agree(t, s, t_cov & s_cov, topk).items()}


def _agree(t: Tensor, s: Tensor, both: Tensor, topk: float) -> dict[str, Tensor]:
    if not bool(both.any()):
        return {k: torch.tensor([math.nan]) for k in ("spearman", "kendall", "pearson", "topk_iou", "cosine")}
    return agreement_scores(t[both][None], s[both][None], topk)  # (1, W_common) each


def _keep_specials(enc: EncodedLike, idx: Tensor) -> Tensor:
    """(n, L) bool for rows ``idx``: tokens with offset (0, 0) — [CLS], [SEP] — which the explainers leave in place."""
    keep = torch.zeros(len(idx), enc.ids.shape[1], dtype=torch.bool)
    for r, i in enumerate(idx.tolist()):
        for j, (a, b) in enumerate(enc.offsets[i][: enc.ids.shape[1]]):
            keep[r, j] = a == b == 0
    return keep


def attribute_rows(
    model: nn.Module, enc: EncodedLike, idx: Tensor, target: Tensor, method: str, batch_size: int, **opts: Any
) -> Tensor:
    """(n, L) token scores of the rows ``idx`` of ``enc`` for classes ``target`` (n,), in batches of similar length.

    Special tokens ([CLS]/[SEP], offset (0, 0)) are kept in place; ``opts`` go to
    :func:`~.text.attribute_text` (e.g. ``n_steps``).
    """
    ids, keep = enc.ids[idx], _keep_specials(enc, idx)
    order = torch.tensor([len(enc.offsets[int(i)]) for i in idx]).argsort(stable=True)
    out = torch.zeros(ids.shape, dtype=torch.float32)
    for s in range(0, ids.shape[0], batch_size):
        rows = order[s : s + batch_size]
        out[rows] = attribute_text(model, ids[rows], target[rows], method, keep=keep[rows], **opts).cpu()
    return out


@torch.no_grad()
def _predict(model: nn.Module, ids: Tensor, batch_size: int) -> Tensor:
    """(n,) predicted classes, in batches, eval mode (mode restored)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([model(ids[i : i + batch_size].to(device)).argmax(1).cpu() for i in range(0, ids.shape[0], batch_size)])


def explain_text_models(
    teacher: nn.Module,
    student: nn.Module,
    texts: Sequence[str],
    teacher_enc: EncodedLike,
    student_enc: EncodedLike,
    targets: Tensor | None = None,
    methods: Sequence[str] = ("integrated_gradients",),
    *,
    labels: Tensor | None = None,
    n_samples: int | None = None,
    class_names: Sequence[str] | None = None,
    teacher_replace_id: int | None = None,
    student_replace_id: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    topk: float = 0.2,
    seed: int = 0,
    gallery_size: int = 6,
    top_words: int = 10,
    batch_size: int = 16,
    skip_inapplicable: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Explain a text teacher and student on the same texts and compare them word by word.

    Both models are explained for the same class (``targets``, default the teacher's
    prediction), each on its own token ids; scores are summed per word of the raw text and
    compared per text; the batch summary is the mean and bootstrap 95% interval over texts
    (as the image path's :meth:`Comparison.summary`), plus the standard deviation.

    Args:
        teacher, student: Text models (the text contract: ``model(ids)``, ``pad_id``,
            ``get_input_embeddings()``; ``attention_maps`` for ``attention_rollout``).
        texts: N raw texts (the test split's rows).
        teacher_enc, student_enc: ``Encoded`` of ``texts`` by each model's tokenizer
            (``.ids`` (N, L), ``.offsets``); the same rows in the same order.
        targets: (N,) classes to explain; default the teacher's predicted classes.
        methods: Names in :data:`TEXT_EXPLAINERS`; the first fills the top-level keys.
        labels: (N,) true classes: shown in the report, and with ``n_samples`` they
            stratify the sample.
        n_samples: Explain at most this many texts (stratified by ``labels``, else the first).
        class_names: Names of the classes (default "0", "1", …).
        teacher_replace_id, student_replace_id: Occlusion's replacement token (the
            tokenizer's ``mask_id`` or ``unk_id``); default the model's pad id (token dropped).
        options: Per-method options, e.g. ``{"integrated_gradients": {"n_steps": 64}}``.
        topk: Fraction of a text's words in the top-k overlap.
        seed: Seeds the sample choice and the bootstrap.
        gallery_size: Texts per gallery.
        top_words: Words per class and model in the "most influential words" lists.
        batch_size: Texts per attribution call (bounds memory).
        skip_inapplicable: Leave out methods that do not apply (rollout on a model without
            attention) instead of raising :class:`DistilensError`.

    Returns:
        ``(block, payload)``: ``block`` for metrics.json's ``explanations`` — ``level``
        ("word"), ``method``, ``n_samples``, ``agreement`` (means), ``agreement_ci95``,
        ``agreement_std``, ``same_prediction``, ``galleries`` (indices into ``texts``),
        ``methods`` (one such block per method), ``sample_indices``, ``skipped``; ``payload``
        the JSON the report renders (:func:`save_text_explanations`).

    Example:
        >>> block, payload = explain_text_models(t, s, texts, t_enc, s_enc, methods=["integrated_gradients"])
        >>> save_text_explanations(run_dir, payload); block["agreement"]["spearman"]
    """
    n = len(texts)
    if n == 0 or (n_samples is not None and n_samples < 1):
        raise DistilensError("explain text: no texts to explain; pass at least one text and n_samples >= 1")
    if teacher_enc.ids.shape[0] != n or student_enc.ids.shape[0] != n:
        raise DistilensError(
            f"explain text: {n} texts but {teacher_enc.ids.shape[0]} teacher and {student_enc.ids.shape[0]} student rows; "
            "encode the same texts for both models"
        )
    if n_samples is not None and labels is not None:
        idx = stratified_indices(torch.as_tensor(labels), n_samples, seed)
    else:
        idx = torch.arange(n if n_samples is None else min(n, n_samples))
    options = options or {}
    run, skipped = applicable_methods(
        methods, TEXT_EXPLAINERS, lambda m: text_inapplicable_reason(m, (teacher, student)), skip_inapplicable
    )

    t_pred = _predict(teacher, teacher_enc.ids[idx], batch_size)
    s_pred = _predict(student, student_enc.ids[idx], batch_size)
    target = t_pred if targets is None else torch.as_tensor(targets).long()[idx]
    sample_texts = [texts[int(i)] for i in idx]
    spans = [words(t) for t in sample_texts]
    n_classes = int(torch.cat([target, t_pred, s_pred]).max()) + 1
    names = [str(c) for c in class_names] if class_names is not None else [str(c) for c in range(n_classes)]

    blocks, per_method = [], {}
    for method in run:
        opts = options.get(method, {})
        t_opts = {**opts, **({"replace_id": teacher_replace_id} if method == "occlusion" and teacher_replace_id is not None else {})}
        s_opts = {**opts, **({"replace_id": student_replace_id} if method == "occlusion" and student_replace_id is not None else {})}
        t_tok = attribute_rows(teacher, teacher_enc, idx, target, method, batch_size, **t_opts)
        s_tok = attribute_rows(student, student_enc, idx, target, method, batch_size, **s_opts)
        t_words, s_words, covered, scores = [], [], [], defaultdict(list)
        for pos, i in enumerate(idx.tolist()):
            t, t_cov = _sum_into_words(spans[pos], teacher_enc.offsets[i], t_tok[pos])
            s, s_cov = _sum_into_words(spans[pos], student_enc.offsets[i], s_tok[pos])
            for k, v in _agree(t, s, t_cov & s_cov, topk).items():
                scores[k].append(float(v[0]))
            t_words.append(t)
            s_words.append(s)
            covered.append(t_cov & s_cov)
        cmp = Comparison(
            method=method, inputs=teacher_enc.ids[idx], targets=target, teacher_pred=t_pred, student_pred=s_pred,
            teacher_maps=_pad_rows(t_words), student_maps=_pad_rows(s_words),
            scores={k: torch.tensor(v, dtype=torch.float32) for k, v in scores.items()},
        )
        block = cmp.summary(seed=seed)
        block["agreement_std"] = {k: _std(v) for k, v in cmp.scores.items()}
        positions = cmp.galleries(gallery_size)
        block["galleries"] = {k: [int(idx[p]) for p in v] for k, v in positions.items()}  # split rows
        blocks.append(block)
        per_method[method] = {
            "teacher": [_json_list(w) for w in t_words],
            "student": [_json_list(w) for w in s_words],
            "covered": [c.tolist() for c in covered],
            "scores": {k: [_json_float(x) for x in v] for k, v in scores.items()},
            "galleries": positions,  # positions in the sample
            "top_words": {
                role: _top_words(sample_texts, spans, maps, covered, target, names, top_words)
                for role, maps in (("teacher", t_words), ("student", s_words))
            },
        }

    first = blocks[0]
    block_out: dict[str, Any] = {"level": "word"}
    block_out.update({k: first[k] for k in ("method", "n_samples", "agreement", "agreement_ci95", "agreement_std", "same_prediction", "galleries")})
    block_out.update({"methods": blocks, "sample_indices": idx.tolist(), "skipped": skipped})
    payload = {
        "version": 1,
        "class_names": names,
        "sample_indices": idx.tolist(),
        "texts": sample_texts,
        "words": [[list(s) for s in sp] for sp in spans],
        "targets": target.tolist(),
        "labels": None if labels is None else torch.as_tensor(labels).long()[idx].tolist(),
        "teacher_pred": t_pred.tolist(),
        "student_pred": s_pred.tolist(),
        "methods": per_method,
        "skipped": skipped,
    }
    return block_out, payload


def _pad_rows(rows: list[Tensor]) -> Tensor:
    """Per-text word scores (W_i,) → (N, max W_i), zeros beyond each text's words."""
    out = torch.zeros(len(rows), max((r.numel() for r in rows), default=0), dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r.float()
    return out


def _std(values: Tensor) -> float | None:
    v = values[~torch.isnan(values)].double()
    return float(v.std(unbiased=False)) if v.numel() else None


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else float(x)


def _json_list(t: Tensor) -> list[float | None]:
    return [_json_float(float(x)) for x in t]


def _top_words(
    texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], maps: Sequence[Tensor], covered: Sequence[Tensor],
    target: Tensor, names: Sequence[str], k: int,
) -> dict[str, list[dict[str, Any]]]:
    """Per explained class: the ``k`` words (lower-cased) with the largest summed share of relevance.

    Each text's word scores are divided by their total |score| (so long texts and models on
    different scales weigh alike), then summed per word over the texts explained for that class.
    """
    total: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    count: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for text, sp, m, cov, c in zip(texts, spans, maps, covered, target.tolist()):
        cov = cov & torch.isfinite(m)
        mass = float(m[cov].abs().sum())
        if mass == 0:
            continue
        for (a, b), v, ok in zip(sp, m.tolist(), cov.tolist()):
            if ok:
                word = text[a:b].lower()
                total[c][word] += v / mass
                count[c][word] += 1
    out = {}
    for c in sorted(total):
        best = sorted(total[c].items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[names[c] if c < len(names) else str(c)] = [{"word": w, "score": s, "count": count[c][w]} for w, s in best]
    return out


def save_text_explanations(run_dir: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``run_dir/explanations/text.json`` atomically; the report renders it."""
    return atomic_write_json(Path(run_dir) / TEXT_PAYLOAD, payload)
