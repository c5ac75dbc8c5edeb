"""Text models: shapes, padding invariance, batched == per-sample, attention maps, gradients, zoo."""

from __future__ import annotations

import pytest
import torch

from distilens.data.bundle import InputSpec
from distilens.errors import ModelError
from distilens.models import build_model, count_params, load_model, save_model
from distilens.models.text import TEXT_MODELS, BiLSTMClassifier, TextCNN, masked_mean, reverse_within_length

PAD = 3  # a pad id other than 0, so nothing relies on padding_idx=0
SPEC = InputSpec("text", (12,), ("neg", "pos", "mid"), vocab_size=50, pad_id=PAD)
SMALL = {
    "embedding_bag": {"dim": 8, "hidden": 6},
    "text_cnn": {"dim": 8, "maps": 5},
    "bilstm": {"dim": 8, "hidden": 6, "mlp": 5},
    "tiny_transformer": {"dim": 16, "layers": 2, "heads": 4},
}


def _ids(lengths: list[int], width: int = 12, seed: int = 0) -> torch.Tensor:
    """Right-padded random ids (never PAD inside a text)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), width), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(4, SPEC.vocab_size, (n,), generator=g)
        ids[i, :n] = row
    return ids


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, SPEC, **SMALL[name]).eval()


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_shapes_and_interface(name: str) -> None:
    model = _model(name)
    ids = _ids([12, 5, 1, 3])
    assert model(ids).shape == (4, 3)
    assert model.pad_id == PAD
    emb = model.get_input_embeddings()
    assert isinstance(emb, torch.nn.Embedding) and emb.num_embeddings == SPEC.vocab_size
    feats = model.forward_features(ids)
    assert feats.dim() == 2 and feats.shape[0] == 4
    assert torch.allclose(model.head(feats), model(ids), atol=1e-6)  # eval: dropout is identity


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_padding_does_not_change_logits(name: str) -> None:
    model = _model(name)
    ids = _ids([7, 2, 1], width=7)
    longer = torch.cat([ids, torch.full((3, 5), PAD)], dim=1)
    assert torch.allclose(model(ids), model(longer), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_batched_equals_per_sample(name: str) -> None:
    model = _model(name)
    ids = _ids([12, 4, 9, 1, 2])
    batched = model(ids)
    single = torch.cat([model(ids[i : i + 1]) for i in range(ids.shape[0])])
    assert torch.allclose(batched, single, atol=1e-6, rtol=0)
    # A text alone, cut to its own length, gives the same logits as in the padded batch.
    assert torch.allclose(model(ids[1:2, :4]), batched[1:2], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_gradients_reach_the_embedding(name: str) -> None:
    model = _model(name).train()
    ids = _ids([12, 3])
    model(ids).sum().backward()
    grad = model.get_input_embeddings().weight.grad
    used = ids[ids != PAD].unique()
    assert grad is not None and grad[used].abs().sum() > 0
    if name != "text_cnn":  # max over time: a token in no winning window gets no gradient
        assert grad[used].abs().sum(1).gt(0).all()
    assert grad[PAD].abs().sum() == 0  # the pad embedding is never used


def test_attention_rows_are_distributions_over_real_tokens() -> None:
    model = _model("tiny_transformer")
    ids = _ids([12, 5, 1])
    maps = model.attention_maps(ids)
    assert len(maps) == 2 and all(m.shape == (3, 4, 12, 12) for m in maps)
    real = ids != PAD
    for m in maps:
        assert (m[~real[:, None, None, :].expand_as(m)] == 0).all()  # pad keys: exactly 0
        assert torch.allclose(m.sum(-1), torch.ones(3, 4, 12), atol=1e-6)
    # The maps are those of the forward pass: scaled dot-product probabilities by hand.
    block = model.blocks[0]
    x = model.embedding(ids) + model.positions.weight[:12]
    h = block.norm1(x)
    q, k, _ = block.attn.qkv(h).view(3, 12, 3, 4, 4).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) / 2.0  # sqrt(head dim 4)
    scores = scores.masked_fill(~real[:, None, None, :], float("-inf"))
    assert torch.allclose(maps[0], scores.softmax(-1), atol=1e-6)


def test_text_without_tokens_gives_finite_outputs_and_gradients() -> None:
    for name in TEXT_MODELS:
        model = _model(name).train()
        ids = torch.full((2, 6), PAD)
        ids[1, :2] = torch.tensor([5, 6])
        out = model(ids)
        out.sum().backward()
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_masked_mean_and_text_cnn_windows_by_hand() -> None:
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0
    # One width-2 filter summing both positions: windows of "a b" are [0 a], [a b], [b 0].
    cnn = TextCNN(vocab_size=5, num_classes=2, pad_id=0, dim=1, widths=(2,), maps=1, dropout=0.0)
    with torch.no_grad():
        cnn.embedding.weight.copy_(torch.tensor([[0.0], [-1.0], [2.0], [5.0], [-4.0]]))
        cnn.convs[0].weight.fill_(1.0)
        cnn.convs[0].bias.fill_(0.0)
    # ids 2, 4 -> embeddings 2, -4: window sums 2, -2, -4 -> ReLU max = 2
    assert cnn.forward_features(torch.tensor([[2, 4, 0, 0]])).item() == 2.0
    # ids 4, 4 -> every window is negative -> ReLU max = 0 (not a pad-only window's value)
    assert cnn.forward_features(torch.tensor([[4, 4, 0]])).item() == 0.0


def test_bigram_bag_by_hand_and_padding_invariant() -> None:
    bag = build_model("embedding_bag", SPEC, dim=1, ngrams=2, buckets=7).eval()
    with torch.no_grad():
        bag.embedding.weight.copy_(torch.arange(50, dtype=torch.float32).unsqueeze(1))  # token t -> t
        bag.bigrams.weight.copy_(100.0 * torch.arange(7, dtype=torch.float32).unsqueeze(1))  # bucket k -> 100 k
    # 1000003 = 4 (mod 7), so the pairs of "5 6 9" and "5 7" fall in buckets
    # (5·4 + 6) = 26 -> 5, (6·4 + 9) = 33 -> 5 and (5·4 + 7) = 27 -> 6
    row = torch.tensor([[5, 6, 9, PAD, PAD], [5, 7, PAD, PAD, PAD]])
    expected = torch.tensor([(5 + 6 + 9 + 500 + 500) / 5, (5 + 7 + 600) / 3])
    assert torch.allclose(bag.forward_features(row).squeeze(1), expected)
    one = torch.tensor([[8, PAD, PAD]])  # one token: no pair, no bigram
    assert bag.forward_features(one).item() == 8.0
    torch.manual_seed(0)
    bag = build_model("embedding_bag", SPEC, dim=8, ngrams=2, buckets=11).eval()
    ids = _ids([7, 2, 1, 12], width=12)
    longer = torch.cat([ids, torch.full((4, 5), PAD)], dim=1)
    assert torch.allclose(bag(ids), bag(longer), atol=1e-6, rtol=0)
    assert torch.allclose(bag(ids), torch.cat([bag(ids[i : i + 1]) for i in range(4)]), atol=1e-6, rtol=0)
    assert count_params(bag) == count_params(build_model("embedding_bag", SPEC, dim=8)) + 11 * 8
    with pytest.raises(ModelError, match="ngrams"):
        build_model("embedding_bag", SPEC, ngrams=3)


def test_zoo_errors_and_save_load_round_trip(tmp_path) -> None:
    image = InputSpec("image", (1, 8, 8), ("a", "b"))
    for name in TEXT_MODELS:
        with pytest.raises(ModelError, match="needs text data"):
            build_model(name, image)
    with pytest.raises(ModelError, match="text_cnn"):
        build_model("text_cnn", SPEC, width=8)
    big = build_model("tiny_transformer", SPEC, dim=32, layers=4)
    assert count_params(big) > count_params(_model("tiny_transformer"))
    model = _model("text_cnn")
    path = save_model(model, tmp_path / "m.safetensors", arch="text_cnn", args=SMALL["text_cnn"], spec=SPEC)
    again, meta = load_model(path)
    assert InputSpec.from_dict(meta["input_spec"]) == SPEC
    ids = _ids([4, 12])
    assert torch.equal(again(ids), model(ids))
    with pytest.raises(ValueError, match="longer"):
        _model("tiny_transformer")(torch.ones(1, 13, dtype=torch.long))


def test_reverse_within_length_by_hand() -> None:
    x = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [0, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 2, 0])
    assert reverse_within_length(x, lengths).tolist() == [[3, 2, 1, 0, 0], [5, 4, 0, 0, 0], [0, 0, 0, 0, 0]]
    feats = torch.randn(3, 5, 4)
    assert torch.equal(reverse_within_length(reverse_within_length(feats, lengths), lengths), feats)  # an involution


@pytest.mark.parametrize("pooling", ["max", "last"])
def test_bilstm_equals_a_packed_bidirectional_lstm(pooling: str) -> None:
    """The pad-free BiLSTM's states are those of torch's packed bidirectional LSTM with the same weights."""
    torch.manual_seed(0)
    model = BiLSTMClassifier(SPEC.vocab_size, 3, PAD, dim=8, hidden=6, mlp=0, pooling=pooling).eval()
    ref = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, name).copy_(getattr(model.forward_lstm, name))
            getattr(ref, name + "_reverse").copy_(getattr(model.backward_lstm, name))
    ids = _ids([12, 5, 1, 8])
    lengths = (ids != PAD).sum(1)
    packed = torch.nn.utils.rnn.pack_padded_sequence(model.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, _) = ref(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=12)  # (B, L, 12), pads 0
    states, mask = model.states(ids)
    assert torch.allclose(states * mask.unsqueeze(-1), out, atol=1e-6)
    if pooling == "last":  # h_n: (2, B, 6), the final state of each direction
        expected = torch.cat([h_n[0], h_n[1]], dim=1)
    else:
        expected = out.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    assert torch.allclose(model.forward_features(ids), expected, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        BiLSTMClassifier(10, 2, 0, pooling="mean")  # type: ignore[arg-type]
