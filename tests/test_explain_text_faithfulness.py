"""Faithfulness (token deletion/insertion) and the sanity check on text models, pinned by hand.

A bag of embeddings summed over the real tokens is linear in the tokens it keeps: removing a
token changes the logit by exactly its embedding's contribution, which is also its Integrated
Gradients attribution from the pad baseline (the pad embedding is 0). So every point of a
deletion or insertion curve has a closed form.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from distilens.explain import ExplainInputs, attribute, cascading_randomization, explain_models, spearman
from distilens.explain.faithfulness import deletion_insertion
from distilens.testing import assert_no_hooks
from distilens.testing.text import MeanBag, TinyAttention

PAD, UNK = 0, 5


class SumBag(nn.Module):
    """logits = W · Σ_{i not pad} e_{id_i}, with e_pad = 0 and D = 1: logit 0 is s, logit 1 is −s."""

    def __init__(self, embeddings: list[float]) -> None:
        super().__init__()
        self.pad_id = PAD
        self.emb = nn.Embedding(len(embeddings), 1)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.emb.weight.copy_(torch.tensor(embeddings).view(-1, 1))
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def forward(self, ids: Tensor) -> Tensor:
        return self.head((self.emb(ids) * (ids != self.pad_id)[..., None]).sum(1))


#: Token 1 → 3, 2 → −1, 3 → 0.5, 4 → 0 (no effect), 5 (an [UNK]) → 0.25.
MODEL_EMBEDDINGS = [0.0, 3.0, -1.0, 0.5, 0.0, 0.25]


def _p0(s: float) -> float:
    """p(class 0) = softmax(s, −s)₀ = σ(2s)."""
    return float(torch.sigmoid(torch.tensor(2.0 * s)))


def test_deletion_and_insertion_of_three_tokens_by_hand() -> None:
    model = SumBag(MODEL_EMBEDDINGS)
    ids = torch.tensor([[1, 2, 3, PAD]])
    maps = attribute(model, ids, 0, method="integrated_gradients", n_steps=8)
    torch.testing.assert_close(maps, torch.tensor([[3.0, -1.0, 0.5, 0.0]]))  # IG = e_i exactly (linear, e_pad = 0)
    curves = deletion_insertion(model, ids, maps, torch.tensor([0]), steps=3)
    # Order 1 (3), 3 (0.5), 2 (−1). Deletion: s = 2.5 → −0.5 → −1 → 0; insertion: 0 → 3 → 3.5 → 2.5.
    deletion = [_p0(s) for s in (2.5, -0.5, -1.0, 0.0)]
    insertion = [_p0(s) for s in (0.0, 3.0, 3.5, 2.5)]
    torch.testing.assert_close(curves["deletion"], torch.tensor([deletion]))
    torch.testing.assert_close(curves["insertion"], torch.tensor([insertion]))
    trapezoid = lambda ys: sum((a + b) / 2 for a, b in zip(ys, ys[1:])) / 3  # noqa: E731
    torch.testing.assert_close(curves["deletion_auc"], torch.tensor([trapezoid(deletion)]))
    torch.testing.assert_close(curves["insertion_auc"], torch.tensor([trapezoid(insertion)]))


def test_each_deletion_step_removes_exactly_the_attribution_of_the_token_removed() -> None:
    g = torch.Generator().manual_seed(0)
    model = SumBag([0.0, *torch.randn(11, generator=g).tolist()])
    ids = torch.randint(1, 12, (6, 8), generator=g)
    ids[2, 5:] = PAD
    ids[4, 3] = 4  # tokens may repeat; pads only at the end
    target = torch.zeros(6, dtype=torch.long)
    maps = attribute(model, ids, target, method="integrated_gradients", n_steps=4)
    n = (ids != PAD).sum(1)
    curves = deletion_insertion(model, ids, maps, target, steps=int(n.max()))
    with torch.no_grad():
        s = model(ids)[:, 0]
    for i in range(6):
        removed = maps[i][ids[i] != PAD].sort(descending=True).values  # pads are never removed
        # Step k removes round(k / steps · n_i) tokens: the logit left is s − Σ of their attributions.
        for k in range(int(n.max()) + 1):
            count = round(k / int(n.max()) * int(n[i]))
            expected = _p0(float(s[i] - removed[:count].sum()))
            assert curves["deletion"][i, k].item() == pytest.approx(expected, abs=1e-5)


def test_deleting_a_zero_attribution_token_changes_nothing() -> None:
    model = SumBag(MODEL_EMBEDDINGS)
    ids = torch.tensor([[1, 4, 2]])  # token 4 embeds to 0: attribution 0, and no effect on the output
    maps = attribute(model, ids, 0, method="integrated_gradients", n_steps=8)
    assert maps[0, 1] == 0
    curves = deletion_insertion(model, ids, maps, torch.tensor([0]), steps=3)
    # Removed in order 1 (3), 4 (0), 2 (−1): step 2 removes token 4, and the probability stays.
    assert curves["deletion"][0, 2] == curves["deletion"][0, 1]
    assert curves["insertion"][0, 2] == curves["insertion"][0, 1]


def test_kept_tokens_pads_and_the_replacement_token() -> None:
    model = SumBag(MODEL_EMBEDDINGS)
    ids = torch.tensor([[1, 2, 3, PAD, PAD]])
    keep = torch.tensor([[True, False, False, False, False]])  # token 1 plays a [CLS]: never removed
    maps = torch.tensor([[9.0, 2.0, 1.0, 5.0, 5.0]])  # pads and kept tokens are never ranked in
    dropped = deletion_insertion(model, ids, maps, torch.tensor([0]), steps=2, keep=keep)
    # Only tokens 2 and 3 move: s = 2.5 → 3.5 (−1 dropped) → 3 (0.5 dropped); insertion from s = 3.
    torch.testing.assert_close(dropped["deletion"], torch.tensor([[_p0(2.5), _p0(3.5), _p0(3.0)]]))
    torch.testing.assert_close(dropped["insertion"], torch.tensor([[_p0(3.0), _p0(2.0), _p0(2.5)]]))
    # Replaced by an [UNK] (0.25) instead of dropped.
    unk = deletion_insertion(model, ids, maps, torch.tensor([0]), steps=2, keep=keep, baseline=UNK)
    torch.testing.assert_close(unk["deletion"], torch.tensor([[_p0(2.5), _p0(3.75), _p0(3.5)]]))
    # Extra trailing padding changes nothing.
    longer = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    again = deletion_insertion(model, longer, torch.cat([maps, torch.ones(1, 3)], 1), torch.tensor([0]), steps=2,
                               keep=torch.cat([keep, torch.zeros(1, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(again["deletion"], dropped["deletion"])
    with pytest.raises(Exception, match="token id"):
        deletion_insertion(model, ids, maps, torch.tensor([0]), baseline=0.5)


def test_the_true_order_deletes_faster_than_a_random_one() -> None:
    # One token decides (embedding 4), six others barely count (0.01 each).
    model = SumBag([0.0, 4.0, *[0.01] * 6])
    ids = torch.stack([torch.randperm(7, generator=torch.Generator().manual_seed(i)) + 1 for i in range(8)])
    target = torch.zeros(8, dtype=torch.long)
    truth = attribute(model, ids, target, method="integrated_gradients", n_steps=4)
    good = deletion_insertion(model, ids, truth, target, steps=7)
    bad = deletion_insertion(model, ids, torch.rand(8, 7, generator=torch.Generator().manual_seed(0)), target, steps=7)
    assert (good["deletion_auc"] <= bad["deletion_auc"] + 1e-6).all()
    assert (good["insertion_auc"] >= bad["insertion_auc"] - 1e-6).all()
    assert good["deletion_auc"].mean() < bad["deletion_auc"].mean() - 0.05


def test_sanity_check_on_a_linear_mean_bag_matches_the_closed_form() -> None:
    model = MeanBag(vocab=12, dim=4, classes=3, seed=0).eval()
    ids = torch.tensor([[3, 5, 7, 2, PAD], [1, 4, 4, 9, 11], [8, 2, 6, PAD, PAD]])
    target = torch.tensor([0, 1, 2])
    before = copy.deepcopy(model.state_dict())
    state = torch.random.get_rng_state()
    out = cascading_randomization(model, ids, target, "integrated_gradients", seed=3, n_steps=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the original must be untouched"
    assert_no_hooks(model)
    assert out["layers"] == ["head", "emb"] and out["ssim"] == [None, None]

    # IG on a linear mean bag: (e_i − e_pad) · W_c / n. Layer 1 re-initialises the head (seeded 3 + 0).
    def ig(emb: Tensor, head: Tensor) -> Tensor:
        n = (ids != PAD).sum(1, keepdim=True).float()
        return ((emb[ids] - emb[PAD]) @ head.T).gather(2, target.view(-1, 1, 1).expand(-1, ids.shape[1], 1)).squeeze(2) / n

    work = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        work.head.reset_parameters()
    e, w = model.emb.weight.detach(), model.head.weight.detach()
    original, randomised = ig(e, w), ig(e, work.head.weight.detach())
    real = ids != PAD  # compared on the scored tokens only
    expected = torch.stack([spearman(original[i][real[i]][None], randomised[i][real[i]][None])[0] for i in range(3)]).mean()
    assert out["spearman"][0] == pytest.approx(float(expected), abs=1e-4)


def test_text_blocks_have_the_same_faithfulness_and_sanity_keys_as_images(cnn_pair, digits) -> None:
    from distilens.testing.text import encode, wordlevel

    pytest.importorskip("tokenizers")
    texts = ["a good film", "a bad film", "good good", "bad , bad film"]
    vocab = ["[PAD]", "[UNK]", "a", "good", "bad", "film", ","]
    enc = encode(wordlevel(vocab), texts)
    teacher, student = TinyAttention(vocab=7, seed=4), MeanBag(vocab=7, classes=2, hidden=3, seed=5)
    # The toy attention layer gives NaN on a text without tokens, so its removed tokens become [UNK].
    inputs = ExplainInputs.from_texts(texts, torch.tensor([1, 0, 1, 0]), enc, enc, teacher_replace_id=1)
    _, text = explain_models(teacher, student, inputs, ["integrated_gradients"], 4, sanity_samples=2)
    _, image = explain_models(*cnn_pair, digits.test, ["saliency"], 6, sanity_samples=2, sanity_layers=1)
    assert set(text) == set(image) and text["level"] == "word" and image["level"] == "pixel"
    for role in ("teacher", "student"):
        assert set(text["faithfulness"][role]) == set(image["faithfulness"][role])
        assert set(text["sanity"][role]) == set(image["sanity"][role]) == {"layers", "spearman", "abs_spearman", "ssim"}
        assert 0.0 <= text["faithfulness"][role]["deletion_auc"] <= 1.0
    assert set(text["methods"][0]) == set(image["methods"][0])
    assert text["sanity"]["student"]["layers"] == ["head", "hidden", "emb"]
    for model in (teacher, student, *cnn_pair):
        assert_no_hooks(model)


def test_curves_of_texts_cut_to_their_length_equal_each_text_alone() -> None:
    """Rows are run sorted by length and cut to the longest in their batch: the same curves as one text at a time."""
    model = TinyAttention(vocab=12, seed=3).eval()
    g = torch.Generator().manual_seed(0)
    lengths = [9, 2, 5, 12, 1, 7]
    ids = torch.zeros(len(lengths), 16, dtype=torch.long)  # trailing pads up to 16
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, 12, (n,), generator=g)
    maps = torch.randn(ids.shape, generator=g).masked_fill(ids == PAD, 0.0)
    target = torch.tensor([0, 1, 1, 0, 1, 0])
    together = deletion_insertion(model, ids, maps, target, steps=4, baseline=UNK, batch_size=7)
    for i, n in enumerate(lengths):
        alone = deletion_insertion(model, ids[i : i + 1, :n], maps[i : i + 1, :n], target[i : i + 1], steps=4, baseline=UNK)
        for key in ("deletion", "insertion"):
            torch.testing.assert_close(together[key][i : i + 1], alone[key], rtol=0, atol=1e-6)
