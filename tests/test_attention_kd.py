"""attention_kd (MiniLM / TinyBERT self-attention transfer) and hints on pooled text features.

The maths first (KL(a, a) = 0, a 2×2 value computed by hand, padding ignored, batched ==
per-sample, head groups), then the objectives through fit() with a toy one-layer
transformer whose attention is written out here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from distilens.data.bundle import DataBundle, InputSpec, Split, TeacherView
from distilens.distill import KD, AttentionKD, Hint, SoftLabelCache, StepTensors, fit, teacher_cache_options
from distilens.distill.text_losses import attention_kd_loss
from distilens.errors import ModelError
from distilens.models import build_model
from distilens.models.tap import POOLED, FeatureTap, group_heads
from distilens.testing import hook_count


def _dist(*shape: int, seed: int = 0) -> Tensor:
    return torch.softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ------------------------------------------------------------------------------ maths
def test_kl_of_identical_maps_is_zero_and_positive_otherwise():
    a = _dist(3, 4, 5, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    assert float(attention_kd_loss(a, a, mask, groups=4)) == pytest.approx(0.0, abs=1e-7)
    assert float(attention_kd_loss(_dist(3, 4, 5, 5, seed=1), a, mask, groups=4)) > 0


def test_hand_computed_two_by_two():
    teacher = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])  # (1, 1, 2, 2)
    student = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    # Row 1: .5 ln(.5/.25) + .5 ln(.5/.75) = 0.1438410; row 2: .9 ln(1.8) + .1 ln(.2) = 0.3680642.
    expected = 0.2559526
    loss = attention_kd_loss(student, teacher, torch.ones(1, 2, dtype=torch.bool))
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(2 / 3) + 0.9 * math.log(1.8) + 0.1 * math.log(0.2)) / 2, abs=1e-6)


def test_pad_rows_and_keys_are_ignored():
    teacher = torch.tensor([[[[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.2, 0.3, 0.5]]]])
    student = torch.tensor([[[[0.25, 0.75, 0.0], [0.5, 0.5, 0.0], [0.9, 0.05, 0.05]]]])
    mask = torch.tensor([[True, True, False]])
    assert float(attention_kd_loss(student, teacher, mask)) == pytest.approx(0.2559526, abs=1e-6)
    changed = student.clone()
    changed[..., 2, :] = torch.tensor([0.1, 0.1, 0.8])  # the pad query row
    changed[..., :2, 2] = 0.3  # mass on the pad key
    assert float(attention_kd_loss(changed, teacher, mask)) == pytest.approx(0.2559526, abs=1e-6)


def test_batched_equals_the_mean_of_per_sample_losses():
    s, t = _dist(4, 2, 6, 6, seed=2), _dist(4, 4, 6, 6, seed=3)
    lengths = torch.tensor([6, 3, 1, 4])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    keys = mask[:, None, None, :]
    s, t = s * keys, t * keys  # padded keys at probability 0, as models give them
    s, t = s / s.sum(-1, keepdim=True), t / t.sum(-1, keepdim=True)
    batched = attention_kd_loss(s, t, mask, groups=2)
    single = torch.stack([attention_kd_loss(s[i : i + 1], t[i : i + 1], mask[i : i + 1], groups=2) for i in range(4)])
    torch.testing.assert_close(batched, single.mean(), rtol=0, atol=1e-6)


def test_head_groups_average_consecutive_heads():
    t = _dist(1, 4, 3, 3, seed=4)
    grouped = group_heads(t, 2)
    torch.testing.assert_close(grouped[0, 1], (t[0, 2] + t[0, 3]) / 2)
    s = _dist(1, 2, 3, 3, seed=5)
    mask = torch.ones(1, 3, dtype=torch.bool)
    # teacher with 4 heads in 2 groups == teacher given already grouped (what the cache stores)
    torch.testing.assert_close(attention_kd_loss(s, t, mask, groups=2), attention_kd_loss(s, grouped, mask, groups=2))
    with pytest.raises(ValueError, match="cannot split 2 attention heads into 3"):
        attention_kd_loss(s, _dist(1, 3, 3, 3), mask, groups=3)


def test_different_sequence_lengths_say_the_tokenizers_must_match():
    with pytest.raises(ValueError, match="same tokenizer"):
        attention_kd_loss(_dist(1, 2, 4, 4), _dist(1, 2, 5, 5), torch.ones(1, 4, dtype=torch.bool))


# ------------------------------------------------------------------------------ toy transformer
class ToyAttention(nn.Module):
    """Multi-head self-attention over the real tokens: forward returns (hidden, probabilities)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 × (B, H, L, d)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        attn = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, -1), attn


class ToyTransformer(nn.Module):
    """Embedding → one multi-head self-attention layer → masked mean → linear head.

    It has ``attention_maps`` only (an AttentionModel, like a Hugging Face teacher): a tap
    reads its attention by a separate call. :class:`ToyTapTransformer` also names its
    attention layer, so the training forward itself is tapped.
    """

    def __init__(self, vocab: int = 12, dim: int = 8, heads: int = 2, classes: int = 2, pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id, self.heads = pad_id, heads
        self.embed = nn.Embedding(vocab, dim)
        self.attn = ToyAttention(dim, heads)
        self.head = nn.Linear(dim, classes)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def attention_maps(self, ids: Tensor) -> list[Tensor]:
        return [self.attn(self.embed(ids), ids != self.pad_id)[1]]

    def forward_features(self, ids: Tensor) -> Tensor:
        hidden = self.attn(self.embed(ids), ids != self.pad_id)[0]
        w = (ids != self.pad_id).unsqueeze(-1).float()
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.forward_features(ids))


class ToyTapTransformer(ToyTransformer):
    attention_layer = "attn"


def _bundle(n: int = 48, length: int = 7) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 12, (n, length), generator=g)
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    ids[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    y = (ids == 3).any(1).long()
    spec = InputSpec("text", (length,), ("no", "yes"), vocab_size=12, pad_id=0)
    return DataBundle("toy-text", Split(ids[:32], y[:32]), Split(ids[32:], y[32:]), Split(ids[32:], y[32:]), spec)


def test_gradient_flows_to_the_students_attention():
    torch.manual_seed(0)
    student, teacher = ToyTapTransformer(heads=2), ToyTransformer(dim=16, heads=4)
    ids = _bundle().train.inputs[:5]
    with torch.no_grad():
        t = group_heads(teacher.attention_maps(ids)[-1], 1)
    with FeatureTap(student, ["attention:1"]) as tap:  # what the trainer records in the training forward
        logits = student(ids)
    torch.testing.assert_close(tap.outputs["attention:1"], group_heads(student.attention_maps(ids)[-1], 1))
    step = StepTensors(logits, torch.zeros(5, dtype=torch.long), student_features=tap.outputs["attention:1"],
                       teacher_features=t, token_mask=ids != 0)
    loss = AttentionKD(heads=1)(step)
    loss.backward()
    assert float(loss.detach()) > 0
    assert student.attn.qkv.weight.grad is not None and student.attn.qkv.weight.grad[: 2 * 8].abs().sum() > 0  # q, k
    assert student.head.weight.grad is None  # the attention term does not reach the head
    assert hook_count(student) == 0


@pytest.mark.parametrize("student_kind", ["maps_only", "tapped", "zoo"])
def test_attention_kd_and_pooled_hint_train_through_fit_and_the_cache(student_kind: str):
    torch.manual_seed(0)
    bundle = _bundle()
    teacher = ToyTransformer(dim=16, heads=4).eval()
    objectives = [KD(), AttentionKD(weight=1.0, heads=2), Hint(weight=1.0)]
    opts = teacher_cache_options(objectives)
    assert opts["features"] == ["attention:2", "auto"]
    cache = SoftLabelCache.build(teacher, bundle.train, **opts)
    assert cache.features("auto", torch.tensor([0, 1])).shape == (2, 16)  # auto = pooled for a text teacher
    assert cache.features("attention:2", torch.tensor([0])).shape == (1, 2, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(cache.features("auto", torch.arange(32)), teacher.forward_features(bundle.train.inputs))
    if student_kind == "zoo":  # the zoo's tiny_transformer (pre-LN, 2 layers) with 2 heads
        spec = InputSpec("text", (7,), ("no", "yes"), vocab_size=12, pad_id=0)
        student = build_model("tiny_transformer", spec, dim=8, heads=2, dropout=0.0)
    else:
        student = (ToyTapTransformer if student_kind == "tapped" else ToyTransformer)(dim=8, heads=2)
    result = fit(student, bundle, objectives=objectives, teacher_cache=cache, epochs=3, batch_size=8, device="cpu", lr=1e-2)
    first, last = result.history[0], result.history[-1]
    assert last["attention_kd"] < first["attention_kd"] and last["hint"] < first["hint"]
    assert isinstance(objectives[2].adapter, nn.Linear) and objectives[2].adapter.weight.shape == (16, 8)
    assert "forward_features" not in vars(student) and hook_count(student) == 0  # the tap left nothing behind


def _count_train_calls(module: nn.Module, calls: list[str], name: str) -> None:
    module.register_forward_pre_hook(lambda m, args: calls.append(name) if m.training else None)


def test_the_students_forward_runs_once_per_step_with_attention_kd_and_a_pooled_hint():
    torch.manual_seed(0)
    bundle = _bundle()  # 32 training texts, batch 8: 4 steps per epoch
    objectives = [KD(), AttentionKD(heads=2), Hint()]
    cache = SoftLabelCache.build(ToyTransformer(dim=16, heads=4).eval(), bundle.train, **teacher_cache_options(objectives))
    spec = InputSpec("text", (7,), ("no", "yes"), vocab_size=12, pad_id=0)
    student = build_model("tiny_transformer", spec, dim=8, heads=2, dropout=0.0)
    calls: list[str] = []
    _count_train_calls(student, calls, "forward")
    _count_train_calls(student.blocks[0], calls, "encoder")  # attention_maps() would run the blocks again
    fit(student, bundle, objectives=objectives, teacher_cache=cache, epochs=2, batch_size=8, device="cpu")
    assert calls.count("forward") == 8 and calls.count("encoder") == 8


def test_attention_kd_needs_a_transformer_student():
    bundle = _bundle()
    cache = SoftLabelCache.build(ToyTransformer(dim=16, heads=4).eval(), bundle.train, features=["attention:1"])
    no_tokens = nn.Sequential(nn.Embedding(12, 4), nn.Flatten(), nn.Linear(28, 2))
    with pytest.raises(ValueError, match="needs a transformer student that reads token ids"):
        fit(no_tokens, bundle, objectives=[AttentionKD()], teacher_cache=cache, epochs=1, device="cpu")
    spec = InputSpec("text", (7,), ("no", "yes"), vocab_size=12, pad_id=0)
    bag = build_model("embedding_bag", spec, dim=4)
    with pytest.raises(ModelError, match="needs a transformer with attention_maps"):
        fit(bag, bundle, objectives=[AttentionKD()], teacher_cache=cache, epochs=1, device="cpu")
    assert hook_count(bag) == 0
    with pytest.raises(ValueError, match="heads must be an integer"):
        AttentionKD(heads=0)


def test_pooled_tap_records_the_forward_and_is_removed_after_a_failure():
    model = ToyTransformer()
    ids = _bundle().train.inputs[:3]
    with FeatureTap(model, [POOLED]) as tap:
        logits = model(ids)
    torch.testing.assert_close(model.head(tap.outputs[POOLED]), logits)
    assert "forward_features" not in vars(model)
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureTap(model, [POOLED]):
            raise RuntimeError("boom")
    assert "forward_features" not in vars(model)


def test_attention_kd_is_refused_when_teacher_and_student_tokenise_differently():
    from distilens.distill import check_text_objectives
    from distilens.errors import ConfigError

    bundle = _bundle()
    check_text_objectives([KD(), AttentionKD()], bundle)  # same ids: fine
    bundle.teacher_view = TeacherView({"train": bundle.train.inputs, "val": bundle.val.inputs, "test": bundle.test.inputs}, bundle.spec)
    with pytest.raises(ConfigError, match=r"distill.losses\[1\] \(attention_kd\): the teacher and the student tokenise differently"):
        check_text_objectives([KD(), AttentionKD()], bundle)
    check_text_objectives([KD(), Hint()], bundle)  # pooled hints need no common tokenizer
    image = DataBundle("img", bundle.train, bundle.val, bundle.test, InputSpec("image", (1, 4, 4), ("a", "b")))
    with pytest.raises(ConfigError, match="needs text data"):
        check_text_objectives([AttentionKD()], image)
