"""Token attributions for text models, words, and teacher–student agreement across tokenizers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from distilens.errors import DistilensError
from distilens.explain import (
    ExplainInputs,
    attribute,
    explain_models,
    explainers_for,
    special_token_mask,
    text_payload,
    token_to_word,
    word_agreement,
    word_scores,
    words,
)
from distilens.testing import assert_no_hooks
from distilens.testing.text import Enc, MeanBag, TinyAttention, encode, wordlevel, wordpiece

tokenizers = pytest.importorskip("tokenizers")

PAD = 0


class FixedAttention(MeanBag):
    """A mean-bag classifier whose attention_maps are given by hand (to check rollout)."""

    def __init__(self, maps: list[Tensor]) -> None:
        super().__init__()
        self.maps = maps

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        n = ids.shape[1]  # trailing pad columns are cut before the model runs
        return [m[..., :n, :n] for m in self.maps]


IDS = torch.tensor([[3, 5, 7, 2, PAD, PAD], [1, 4, 4, 9, 11, 6], [8, 2, PAD, PAD, PAD, PAD]])
TEXT_METHODS = explainers_for("text")


def explain_texts(teacher, student, texts, t_enc, s_enc, methods=("integrated_gradients",), *, labels=None, targets=None,
                  class_names=None, n_samples=None, teacher_replace_id=None, student_replace_id=None, **kwargs):
    """explain_models on texts read through two tokenizers, and the report payload of its comparisons."""
    labels = torch.zeros(len(texts), dtype=torch.long) if labels is None else labels
    inputs = ExplainInputs.from_texts(texts, labels, t_enc, s_enc, class_names=class_names, targets=targets,
                                      teacher_replace_id=teacher_replace_id, student_replace_id=student_replace_id)
    kwargs = {"skip_inapplicable": True, "sanity": False, **kwargs}
    comparisons, block = explain_models(teacher, student, inputs, list(methods), len(texts) if n_samples is None else n_samples,
                                        **kwargs)
    rows = torch.tensor(block["sample_indices"])
    align = inputs.align.take(rows)
    payload = text_payload(comparisons, align.texts, align.spans, rows=rows, labels=labels[rows],
                           class_names=class_names, skipped=block["skipped"])
    return block, payload


# --- words and token → word --------------------------------------------------------------------


def test_words_are_words_and_single_punctuation() -> None:
    text = "Don't panic!! naïve café, 42"
    assert [text[a:b] for a, b in words(text)] == ["Don't", "panic", "!", "!", "naïve", "café", ",", "42"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_words_tile_the_text_apart_from_whitespace(text: str) -> None:
    spans = words(text)
    assert all(a < b for a, b in spans) and all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    covered = set().union(*(range(a, b) for a, b in spans)) if spans else set()
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)
    # Each word is a single punctuation mark or made of word characters (and one inner apostrophe).
    assert all(b - a == 1 or all(c.isalnum() or c == "_" for c in text[a:b].replace("'", "")) for a, b in spans)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["naïve", "café", "good", "film", "!", ",", "don't", "ok"]), min_size=1, max_size=12),
       st.integers(0, 2**31 - 1))
def test_word_scores_conserve_the_token_scores(tokens: list[str], seed: int) -> None:
    text = " ".join(tokens)
    enc = _wp([text])
    scores = torch.randn(enc.ids.shape[1], generator=torch.Generator().manual_seed(seed))
    _, per_word = word_scores(text, enc.offsets[0], scores)
    owner = token_to_word(enc.offsets[0], words(text), length=enc.ids.shape[1])
    torch.testing.assert_close(per_word.sum(), scores[owner >= 0].double().sum())
    assert (owner[[i for i, o in enumerate(enc.offsets[0]) if o == (0, 0)]] == -1).all()  # [CLS], [SEP]


def test_token_to_word_by_largest_overlap() -> None:
    spans = [(0, 5), (6, 10), (10, 11)]
    offsets = [(0, 0), (0, 2), (2, 5), (4, 8), (9, 11), (0, 0)]  # (4, 8): 1 char of word 0, 2 of word 1
    got = token_to_word(offsets, spans, length=8)
    # (9, 11) overlaps both words by 1: the tie goes to the first; specials and pads are −1.
    assert got.tolist() == [-1, 0, 0, 1, 1, -1, -1, -1]


# --- token attributions: closed forms ------------------------------------------------------------


def test_input_x_gradient_closed_form_on_a_linear_mean_bag() -> None:
    model = MeanBag()
    target = torch.tensor([0, 2, 1])
    got = attribute(model, IDS, target, method="input_x_gradient")
    # f_c = W_c · (Σ_{i non-pad} e_i / n) + b_c ⇒ ∂f_c/∂e_i = W_c / n and e_i · ∂f_c/∂e_i = e_i · W_c / n.
    e, w = model.emb.weight.detach(), model.head.weight.detach()
    expected = torch.zeros(IDS.shape)
    for b in range(3):
        n = int((IDS[b] != PAD).sum())
        for i in range(n):
            expected[b, i] = float(e[IDS[b, i]] @ w[target[b]]) / n
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_integrated_gradients_is_exact_on_a_linear_mean_bag() -> None:
    model = MeanBag()
    target = torch.tensor([1, 0, 2])
    got = attribute(model, IDS, target, method="integrated_gradients", n_steps=8)
    # Linear in the embeddings: IG_i = (e_i − e_pad) · W_c / n exactly (the baseline is the pad embedding).
    e, w = model.emb.weight.detach(), model.head.weight.detach()
    n = (IDS != PAD).sum(1, keepdim=True).float()
    expected = ((e[IDS] - e[PAD]) @ w.T).gather(2, target.view(-1, 1, 1).expand(-1, IDS.shape[1], 1)).squeeze(2) / n
    expected[IDS == PAD] = 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_on_a_nonlinear_mean_bag() -> None:
    model = MeanBag(hidden=5)
    target = torch.tensor([2, 1, 0])
    got = attribute(model, IDS, target, method="integrated_gradients", n_steps=128)
    with torch.no_grad():
        fx = model(IDS).gather(1, target.view(-1, 1)).squeeze(1)
        # The baseline: every non-pad token's embedding replaced by the pad embedding, the
        # padding mask unchanged, so the pooled vector is e_pad itself.
        f_base = model.head(torch.tanh(model.hidden(model.emb.weight[PAD])))[target]
    torch.testing.assert_close(got.sum(1), fx - f_base, rtol=1e-3, atol=1e-5)


def _completeness_error(model: nn.Module, scores: Tensor, target: Tensor) -> Tensor:
    """|Σ_tokens IG − (f(x) − f(x′))| per text, f(x′) the pad embedding pooled (see above)."""
    with torch.no_grad():
        fx = model(IDS).gather(1, target.view(-1, 1)).squeeze(1)
        f_base = model.head(torch.tanh(model.hidden(model.emb.weight[PAD])))[target]
    return (scores.sum(1) - (fx - f_base)).abs(), (fx - f_base).abs()


def test_integrated_gradients_auto_steps_meet_the_completeness_tolerance_where_8_steps_do_not() -> None:
    """n_steps="auto" (the default) doubles the steps per text until Σ IG = f(x) − f(x′) within 1%."""
    from distilens.explain.tokens import IG_TOLERANCE

    model = MeanBag(hidden=5)
    with torch.no_grad():  # a sharply curved path: text 0 needs 32 Gauss–Legendre steps, texts 1 and 2 need 16
        model.emb.weight.mul_(4.0)
        model.hidden.weight.mul_(8.0)
    target = torch.tensor([2, 1, 0])
    error8, gap = _completeness_error(model, attribute(model, IDS, target, method="integrated_gradients", n_steps=8), target)
    assert (error8 > IG_TOLERANCE * gap.clamp_min(0.1)).any()
    auto = attribute(model, IDS, target, method="integrated_gradients")
    error, gap = _completeness_error(model, auto, target)
    assert (error <= IG_TOLERANCE * gap.clamp_min(0.1) + 1e-6).all(), (error, gap)
    # A text is recomputed with 2^k · 8 steps as a whole: its scores are those of some fixed step count.
    fixed = {n: attribute(model, IDS, target, method="integrated_gradients", n_steps=n) for n in (8, 16, 32, 64)}
    used = [next(n for n, f in fixed.items() if torch.allclose(auto[row], f[row], rtol=0, atol=1e-6)) for row in range(3)]
    assert used == [32, 16, 16]  # the fewest steps that meet the tolerance, per text
    capped = attribute(model, IDS, target, method="integrated_gradients", max_steps=20)  # 8, 16, then 20: never above
    torch.testing.assert_close(capped[0], attribute(model, IDS, target, method="integrated_gradients", n_steps=20)[0],
                               rtol=0, atol=1e-6)


def test_integrated_gradients_auto_steps_stop_at_8_on_a_linear_model() -> None:
    model = MeanBag()  # linear in the embeddings: exact at any step count
    target = torch.tensor([1, 0, 2])
    torch.testing.assert_close(attribute(model, IDS, target, method="integrated_gradients"),
                               attribute(model, IDS, target, method="integrated_gradients", n_steps=8), rtol=0, atol=1e-6)


def test_kept_tokens_stay_in_the_baseline_and_score_zero() -> None:
    model = MeanBag(hidden=5)
    keep = torch.zeros(IDS.shape, dtype=torch.bool)
    keep[:, 0] = True  # as a [CLS] token would be
    got = attribute(model, IDS, 0, method="integrated_gradients", keep=keep, n_steps=128)
    assert (got[:, 0] == 0).all()
    with torch.no_grad():
        base = torch.where(keep | (IDS == PAD), IDS, torch.full_like(IDS, PAD))
        fx = model(IDS)[:, 0]
        # f(baseline) with the input's padding mask: pool the baseline's embeddings by hand.
        mask = (IDS != PAD).float()
        f_base = model.head(model.pool(model.emb(base), mask))[:, 0]
    torch.testing.assert_close(got.sum(1), fx - f_base, rtol=1e-3, atol=1e-5)


def _hand_model() -> MeanBag:
    """D = 1, tokens 1, 2, 3 embed to 3, 6, 9, token 4 (unk) to 0; logits (x, −x)."""
    model = MeanBag(vocab=5, dim=1, classes=2)
    with torch.no_grad():
        model.emb.weight.copy_(torch.tensor([[100.0], [3.0], [6.0], [9.0], [0.0]]))
        model.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.head.bias.zero_()
    return model


def test_occlusion_by_hand_on_three_tokens() -> None:
    model = _hand_model()
    ids = torch.tensor([[1, 2, 3, PAD]])
    # mean 6. Replacing by unk (0): means 5, 4, 3 → drops 1, 2, 3.
    unk = attribute(model, ids, 0, method="occlusion", replace_id=4)
    torch.testing.assert_close(unk, torch.tensor([[1.0, 2.0, 3.0, 0.0]]))
    # Dropping the token (the pad id, the default): means 7.5, 6, 4.5 → drops −1.5, 0, 1.5.
    drop = attribute(model, ids, 0, method="occlusion")
    torch.testing.assert_close(drop, torch.tensor([[-1.5, 0.0, 1.5, 0.0]]))
    # On probabilities: p₀ = σ(2·mean).
    prob = attribute(model, ids, 0, method="occlusion", replace_id=4, score="probability")
    sig = torch.sigmoid
    expected = torch.tensor([[sig(torch.tensor(12.0)) - sig(torch.tensor(2.0 * m)) for m in (5.0, 4.0, 3.0)] + [0.0]])
    torch.testing.assert_close(prob, expected, rtol=1e-5, atol=1e-6)


def test_attention_rollout_of_two_hand_made_layers() -> None:
    # Layer 1 heads average to [[1, 0], [.5, .5]], layer 2 to [[.5, .5], [0, 1]]; key 3 is a pad (probability 0).
    a1 = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    a2 = torch.tensor([[0.5, 0.5, 0], [0, 1.0, 0], [1 / 3, 1 / 3, 1 / 3]])
    delta = torch.tensor([[0.0, 0, 0], [0.25, -0.25, 0], [0, 0, 0]])
    maps = [torch.stack([a1 + delta, a1 - delta])[None], torch.stack([a2, a2])[None]]  # (1, 2, 3, 3) each
    model = FixedAttention(maps)
    ids = torch.tensor([[1, 2, PAD]])
    # Â₁ = [[1, 0], [.25, .75]], Â₂ = [[.75, .25], [0, 1]]; R = Â₂Â₁ = [[.8125, .1875], [.25, .75]].
    first = attribute(model, ids, 0, method="attention_rollout", query="first")
    torch.testing.assert_close(first, torch.tensor([[0.8125, 0.1875, 0.0]]))
    mean = attribute(model, ids, 0, method="attention_rollout", query="mean")
    torch.testing.assert_close(mean, torch.tensor([[0.53125, 0.46875, 0.0]]))
    for pooling, expected in (("first", first), ("cls", first), ("mean", mean)):
        model.pooling = pooling
        torch.testing.assert_close(attribute(model, ids, 0, method="attention_rollout"), expected)


# --- every method: batched == per-sample, pads zero, mode and hooks restored ----------------------

FAST = {"integrated_gradients": {"n_steps": 16}}


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_batched_equals_per_sample_and_pads_are_zero(method: str) -> None:
    model = TinyAttention(seed=1)
    model.train()
    target = torch.tensor([1, 0, 1])
    batched = attribute(model, IDS, target, method=method, **FAST.get(method, {}))
    assert model.training
    assert_no_hooks(model)
    assert batched.shape == IDS.shape and torch.isfinite(batched).all()
    assert (batched[IDS == PAD] == 0).all()
    assert batched.abs().sum() > 0
    for i in range(IDS.shape[0]):
        one = attribute(model, IDS[i : i + 1], target[i : i + 1], method=method, **FAST.get(method, {}))
        torch.testing.assert_close(one, batched[i : i + 1], rtol=1e-4, atol=1e-6)


def test_no_hook_left_after_a_failing_call() -> None:
    model = MeanBag()
    with pytest.raises(Exception):
        attribute(model, IDS, torch.tensor([0, 99, 0]), method="integrated_gradients", n_steps=4)
    assert_no_hooks(model)
    assert model.training


def test_bad_inputs_are_user_errors() -> None:
    with pytest.raises(DistilensError, match="did you mean"):
        attribute(MeanBag(), IDS, 0, method="integrated_gradient")
    with pytest.raises(DistilensError, match="int64"):
        attribute(MeanBag(), IDS.float(), 0, method="input_x_gradient")
    with pytest.raises(DistilensError, match="pad_id"):
        attribute(nn.Sequential(nn.Embedding(12, 2)), IDS, 0, method="input_x_gradient")
    with pytest.raises(DistilensError, match="score must be"):
        attribute(MeanBag(), IDS, 0, method="occlusion", score="loss")


# --- words from two different tokenizers -----------------------------------------------------------


WP_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "na", "##ive", "caf", "##e", "!", "a", "good", "##ish", "film", ",", "bad"]
WL_VOCAB = ["[PAD]", "[UNK]", "naïve", "café", "!", "a", "goodish", "film", ",", "bad"]


def _wp(texts: list[str]) -> Enc:
    return encode(wordpiece(WP_VOCAB), texts)


def _wl(texts: list[str]) -> Enc:
    return encode(wordlevel(WL_VOCAB), texts)


TEXTS = ["Naïve café!", "A goodish film, a bad film", "bad"]


def test_wordpiece_and_wordlevel_align_to_the_same_words() -> None:
    wp, wl = _wp(TEXTS), _wl(TEXTS)
    # [CLS] na ##ive caf ##e ! [SEP]: the sub-words of "Naïve" and "café" add up per word.
    assert wp.offsets[0] == [(0, 0), (0, 2), (2, 5), (6, 9), (9, 10), (10, 11), (0, 0)]
    spans, s = word_scores(TEXTS[0], wp.offsets[0], torch.tensor([100.0, 1, 2, 3, 4, 5, 100, 0]))
    assert [TEXTS[0][a:b] for a, b in spans] == ["Naïve", "café", "!"]
    torch.testing.assert_close(s, torch.tensor([3.0, 7.0, 5.0], dtype=torch.float64))
    spans_wl, s_wl = word_scores(TEXTS[0], wl.offsets[0], torch.tensor([3.0, 7.0, 5.0]))
    assert spans_wl == spans
    torch.testing.assert_close(s_wl, s)
    # The same word scores through either tokenizer agree perfectly.
    agree = word_agreement(TEXTS[0], wp.offsets[0], torch.tensor([0.0, 1, 2, 3, 4, 5, 0]), wl.offsets[0], s_wl.float())
    assert agree["spearman"] == pytest.approx(1.0) and agree["cosine"] == pytest.approx(1.0)
    assert agree["topk_iou"] == 1.0
    # Reversed order of importance: ρ = −1.
    agree = word_agreement(TEXTS[0], wp.offsets[0], torch.tensor([0.0, 1, 2, 3, 4, 5, 0]), wl.offsets[0], -s_wl.float())
    assert agree["spearman"] == pytest.approx(-1.0)


def test_words_no_token_covers_are_left_out_of_the_agreement() -> None:
    text = "a good film"
    spans = words(text)
    # The teacher was truncated after "good": "film" is compared on neither side.
    t = word_agreement(text, [(0, 1), (2, 6)], torch.tensor([1.0, 2.0]), [(0, 1), (2, 6), (7, 11)], torch.tensor([1.0, 2.0, -50.0]))
    assert len(spans) == 3 and t["spearman"] == pytest.approx(1.0) and t["cosine"] == pytest.approx(1.0)
    none = word_agreement(text, [], torch.zeros(0), [(0, 1)], torch.ones(1))
    assert all(math.isnan(v) for v in none.values())


def test_a_model_agrees_with_itself() -> None:
    enc = _wl(TEXTS)
    model = MeanBag(vocab=10, hidden=4)
    block, payload = explain_texts(
        model, model, TEXTS, enc, enc, methods=["integrated_gradients", "input_x_gradient", "occlusion"],
        options={"integrated_gradients": {"n_steps": 8}},
    )
    for m in block["methods"]:
        assert m["agreement"]["spearman"] == pytest.approx(1.0)
        assert m["agreement"]["cosine"] == pytest.approx(1.0)
        assert m["agreement"]["topk_iou"] == pytest.approx(1.0)
        assert m["same_prediction"] == 1.0
    assert block["galleries"]["different_class"] == []
    json.dumps(payload, allow_nan=False)


def test_teacher_and_student_with_different_tokenizers() -> None:
    wp, wl = _wp(TEXTS), _wl(TEXTS)
    teacher, student = TinyAttention(vocab=15, seed=2), MeanBag(vocab=10, classes=2, hidden=3, seed=3)
    block, payload = explain_texts(
        teacher, student, TEXTS, wp, wl, methods=["attention_rollout", "integrated_gradients", "occlusion"],
        labels=torch.tensor([1, 0, 1]), class_names=["rotten", "fresh"], teacher_replace_id=1, student_replace_id=1,
        options={"integrated_gradients": {"n_steps": 8}},
    )
    assert set(block["skipped"]) == {"attention_rollout"}
    assert "MeanBag" in block["skipped"]["attention_rollout"]
    assert block["method"] == "integrated_gradients" and block["level"] == "word"
    assert set(block["agreement"]) >= {"spearman", "kendall", "topk_iou", "cosine"}
    assert block["n_samples"] == 3 and block["sample_indices"] == [0, 1, 2]
    ig = payload["methods"]["integrated_gradients"]
    assert [len(w) for w in payload["words"]] == [3, 7, 1]
    assert [len(r) for r in ig["teacher"]] == [3, 7, 1] and [len(r) for r in ig["student"]] == [3, 7, 1]
    # The teacher explained for its own prediction: Σ word scores = Σ token scores (specials score 0).
    t_tok = attribute(teacher, wp.ids, torch.tensor(payload["targets"]), method="integrated_gradients",
                      keep=special_token_mask(wp.offsets, wp.ids.shape[1]), n_steps=8)
    torch.testing.assert_close(torch.tensor([sum(r) for r in ig["teacher"]], dtype=torch.float64), t_tok.sum(1).double(), rtol=1e-5, atol=1e-6)
    assert payload["targets"] == payload["teacher_pred"]
    assert set(ig["top_words"]["teacher"]) <= {"rotten", "fresh"}
    json.dumps(payload, allow_nan=False)
    json.dumps(block, allow_nan=False)


def test_explaining_texts_rejects_mismatched_rows_and_inapplicable_methods() -> None:
    enc = _wl(TEXTS)
    model = MeanBag(vocab=10)
    with pytest.raises(DistilensError, match="3 texts but 2 teacher"):
        explain_texts(model, model, TEXTS, Enc(enc.ids[:2], enc.offsets[:2]), enc)
    with pytest.raises(DistilensError, match="no samples to explain"):
        explain_texts(model, model, TEXTS, enc, enc, n_samples=0)
    with pytest.raises(DistilensError, match="did you mean"):
        explain_texts(model, model, TEXTS, enc, enc, methods=["oclusion"])
    with pytest.raises(DistilensError, match="no explain method applies"):
        explain_texts(model, model, TEXTS, enc, enc, methods=["attention_rollout"])
    with pytest.raises(DistilensError, match="attention"):
        explain_texts(model, model, TEXTS, enc, enc, methods=["attention_rollout"], skip_inapplicable=False)


class _TinyBert(nn.Module):
    """A randomly initialised 2-layer BERT behind the text contract ([CLS]-pooled); nothing downloaded."""

    pooling = "first"

    def __init__(self, vocab: int) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=32, num_labels=2,
                                      attn_implementation="eager")
        torch.manual_seed(0)
        self.bert = transformers.BertForSequenceClassification(cfg)
        self.pad_id = PAD

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.bert(input_ids=ids, attention_mask=(ids != PAD).long() if mask is None else mask).logits

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        out = self.bert(input_ids=ids, attention_mask=(ids != PAD).long(), output_attentions=True)
        return [a * (ids != PAD)[:, None, None, :] for a in out.attentions]


def test_integrated_gradients_on_a_hugging_face_bert_with_sub_words() -> None:
    enc = _wp(TEXTS)
    model = _TinyBert(len(WP_VOCAB))
    keep = special_token_mask(enc.offsets, enc.ids.shape[1])
    assert keep.tolist() == [[o == (0, 0) for o in offs] + [False] * (enc.ids.shape[1] - len(offs)) for offs in enc.offsets]
    target = torch.tensor([0, 1, 1])
    got = attribute(model, enc.ids, target, method="integrated_gradients", keep=keep, n_steps=256)
    assert (got[keep] == 0).all() and (got[enc.ids == PAD] == 0).all()
    with torch.no_grad():
        model.eval()
        fx = model(enc.ids).gather(1, target.view(-1, 1)).squeeze(1)
        # The baseline keeps [CLS]/[SEP], puts [PAD] elsewhere, and keeps the input's attention mask.
        base = torch.where(keep | (enc.ids == PAD), enc.ids, torch.full_like(enc.ids, PAD))
        fb = model(base, (enc.ids != PAD).long()).gather(1, target.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(got.sum(1), fx - fb, rtol=1e-3, atol=1e-4)
    # The word scores of "Naïve café!" are the sums of its sub-word scores.
    spans, per_word = word_scores(TEXTS[0], enc.offsets[0], got[0])
    torch.testing.assert_close(per_word, torch.stack([got[0, 1:3].sum(), got[0, 3:5].sum(), got[0, 5]]).double())


def test_hugging_face_attention_survives_the_hook_safety_net() -> None:
    # transformers installs its attention-capturing hooks on first use and marks the model;
    # removing them (no hook may be left behind) must not leave later calls without attentions.
    enc = _wp(TEXTS)
    model = _TinyBert(len(WP_VOCAB))
    first = attribute(model, enc.ids, 0, method="attention_rollout")
    assert_no_hooks(model)
    again = attribute(model, enc.ids, 0, method="attention_rollout")
    torch.testing.assert_close(again, first)
    assert len(model.attention_maps(enc.ids)) == 2
    torch.testing.assert_close(first.sum(1), torch.ones(3))  # [CLS]'s rollout row is a distribution


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_extra_padding_changes_nothing(method: str) -> None:
    model = TinyAttention(seed=3)
    longer = torch.cat([IDS, torch.full((3, 5), PAD)], 1)
    short = attribute(model, IDS, torch.tensor([0, 1, 0]), method=method, **FAST.get(method, {}))
    long = attribute(model, longer, torch.tensor([0, 1, 0]), method=method, **FAST.get(method, {}))
    assert long.shape == longer.shape and (long[:, IDS.shape[1]:] == 0).all()
    torch.testing.assert_close(long[:, : IDS.shape[1]], short)


def test_the_readme_example_runs(tmp_path) -> None:
    from distilens.explain import WordAligner, compare, explain_stage

    texts, labels = TEXTS, torch.tensor([1, 0, 1])
    teacher_enc, student_enc = _wp(texts), _wl(texts)
    teacher, student = TinyAttention(vocab=15, seed=2), MeanBag(vocab=10, classes=2, hidden=3, seed=3)
    # The lines of README.md, "Explaining text models".
    scores = attribute(student, student_enc.ids, method="occlusion")  # (B, L), pads 0
    cmp = compare(teacher, student, teacher_enc.ids, student_inputs=student_enc.ids,
                  align=WordAligner(texts, teacher_enc.offsets, student_enc.offsets))
    inputs = ExplainInputs.from_texts(texts, labels, teacher_enc, student_enc)
    block = explain_stage(teacher, student, inputs, ["integrated_gradients", "occlusion"], tmp_path)
    assert scores.shape == student_enc.ids.shape and (scores[student_enc.ids == PAD] == 0).all()
    assert cmp.level == "word" and cmp.aligned.teacher.shape == (3, 7)
    assert -1 <= block["agreement"]["spearman"] <= 1 and 0 <= block["faithfulness"]["student"]["deletion_auc"] <= 1
    assert json.loads((tmp_path / "explanations" / "text.json").read_text())["texts"] == texts
    assert_no_hooks(teacher)
    assert_no_hooks(student)
