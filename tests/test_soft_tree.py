import math

import pytest
import torch
import torch.nn.functional as F

from distilens.distill import fit
from distilens.models import SoftDecisionTree, build_model, load_model, save_model
from distilens.testing import tiny_bundle


def _tree(depth: int = 3, features: int = 5, classes: int = 4, **kw) -> SoftDecisionTree:
    torch.manual_seed(0)
    return SoftDecisionTree(features, classes, depth, **kw)


def _naive_path_probs(tree: SoftDecisionTree, x: torch.Tensor) -> torch.Tensor:
    """(B, L) path probability of every leaf, multiplied out node by node (left = 1 − p)."""
    p = torch.sigmoid(tree.branch_logits(x))
    out = torch.ones(x.shape[0], 2**tree.depth)
    for leaf in range(2**tree.depth):
        node = 0
        for d in reversed(range(tree.depth)):
            right = (leaf >> d) & 1
            out[:, leaf] *= p[:, node] if right else 1 - p[:, node]
            node = 2 * node + 1 + right
    return out


def test_shapes_and_the_train_output_is_the_log_of_the_path_mixture() -> None:
    tree = _tree().train()
    x = torch.randn(6, 5)
    out = tree(x)
    assert out.shape == (6, 4)
    mix = _naive_path_probs(tree, x) @ F.softmax(tree.leaf_logits, 1)  # Σ_ℓ P^ℓ Q^ℓ
    torch.testing.assert_close(out.exp(), mix, rtol=1e-5, atol=1e-7)
    assert torch.allclose(out.exp().sum(1), torch.ones(6))


def test_path_probabilities_are_the_products_along_each_path_and_sum_to_one() -> None:
    tree = _tree(depth=4).train()
    x = torch.randn(7, 5) * 2
    log_leaf, log_reach = tree.log_path_probs(x)
    torch.testing.assert_close(log_leaf.exp(), _naive_path_probs(tree, x), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(log_leaf.exp().sum(1), torch.ones(7))
    for d in range(4):  # the inner nodes of each depth split all the mass: each level sums to 1
        torch.testing.assert_close(log_reach[:, 2**d - 1 : 2 ** (d + 1) - 1].exp().sum(1), torch.ones(7))


def test_decision_path_is_consistent_with_the_eval_prediction() -> None:
    tree = _tree(depth=4, features=3).eval()
    x = torch.randn(50, 3) * 3
    nodes, probs, leaf = tree.decision_path(x)
    assert nodes.shape == probs.shape == (50, 4) and leaf.shape == (50,)
    assert (nodes[:, 0] == 0).all() and (probs >= 0.5).all() and (probs <= 1).all()
    p = torch.sigmoid(tree.branch_logits(x))
    for b in range(50):  # each step goes to the child of the branch taken
        for d in range(3):
            right = p[b, nodes[b, d]] > 0.5
            assert nodes[b, d + 1] == 2 * nodes[b, d] + 1 + int(right)
    out = tree(x)
    torch.testing.assert_close(out, F.log_softmax(tree.leaf_logits, 1)[leaf])
    assert torch.equal(out.argmax(1), tree.leaf_logits.argmax(1)[leaf])


def test_balance_penalty_hand_values() -> None:
    # All routing probabilities 1/2 (w = 0, b = 0): α_i = 1/2 and each node costs
    # −½(log ½ + log ½) = log 2, weighted 2^(−d): depth 1 → λ log 2; depth 2 → λ(1 + 2·½) log 2.
    for depth, factor in ((1, 1.0), (2, 2.0), (3, 3.0)):
        tree = _tree(depth=depth, penalty=0.1).train()
        torch.nn.init.zeros_(tree.inner.weight)
        torch.nn.init.zeros_(tree.inner.bias)
        tree(torch.randn(4, 5))
        assert tree.regularization().item() == pytest.approx(0.1 * factor * math.log(2), rel=1e-6)
    # One node routing right with p = σ(1) for every input: α = σ(1) = 0.731059,
    # penalty = −λ·½(log 0.731059 + log 0.268941) = 0.1 · 0.813262 = 0.0813262.
    tree = _tree(depth=1, penalty=0.1).train()
    torch.nn.init.zeros_(tree.inner.weight)
    torch.nn.init.ones_(tree.inner.bias)
    tree(torch.randn(3, 5))
    assert tree.regularization().item() == pytest.approx(0.0813262, rel=1e-5)
    assert _tree(penalty=0.0).train().regularization().item() == 0.0


def test_paper_loss_bounds_the_mixture_cross_entropy_from_above() -> None:
    tree = _tree().train()
    x, y = torch.randn(16, 5), torch.randint(0, 4, (16,))
    onehot = F.one_hot(y, 4).float()
    mixture_ce = F.nll_loss(tree(x), y)
    assert tree.paper_loss(x, onehot).item() >= mixture_ce.item() - 1e-6  # Jensen
    # Hard routing (large β): the two coincide.
    hard = _tree(beta_init=1e4).train()
    torch.testing.assert_close(hard.paper_loss(x, onehot), F.nll_loss(hard(x), y), rtol=1e-4, atol=1e-5)


def test_soft_tree_trains_with_its_penalty_and_round_trips(tmp_path) -> None:
    bundle = tiny_bundle(n=60, shape=(6,), classes=3)
    torch.manual_seed(0)
    tree = build_model("soft_tree", bundle.spec, depth=2)
    result = fit(tree, bundle, epochs=8, batch_size=16, lr=0.05, device="cpu")
    assert "regularization" in result.history[0] and result.history[0]["regularization"] > 0
    assert result.best_val_accuracy > 0.6
    path = save_model(tree, tmp_path / "t.safetensors", arch="soft_tree", args={"depth": 2}, spec=bundle.spec)
    loaded, _ = load_model(path)
    x = bundle.test.inputs
    torch.testing.assert_close(loaded(x), tree.eval()(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="depth must be"):
        SoftDecisionTree(3, 2, depth=0)


@pytest.mark.slow
def test_on_digits_the_distilled_tree_stays_level_with_the_label_tree(digits) -> None:
    # 169 s at 1 thread under load 3.6 on 2 cores (not timed idle). The recipe of BENCHMARKS.md
    # "Soft tree and loss defaults, measured": depth 5, 60 epochs, lr 1e-2; distilled =
    # leaf_kd at T = 4 (the paper's loss on the teacher's soft targets), labels = ce.
    # Distillation is NOT reliably ahead on digits (+0.3 ± 1.6 points over 10 paired seeds,
    # −2.2 … +3.3 per seed), so this pins only that the distilled tree trains as well as the
    # label tree: within 2 points on the mean of 3 seeds. Observed: labels 93.9 / 92.2 /
    # 93.9, distilled 94.4 / 93.1 / 91.9 (means 93.3 vs 93.1: a 1.8-point margin).
    from distilens.distill import CE, LeafKD, SoftLabelCache, evaluate_split

    torch.manual_seed(0)
    teacher = build_model("cnn", digits.spec, width=32)
    fit(teacher, digits, epochs=15, device="cpu", seed=0)
    cache = SoftLabelCache.build(teacher, digits.train)
    acc: dict[str, list[float]] = {"hard": [], "distilled": []}
    for seed in range(3):
        for mode, objectives in (("hard", [CE()]), ("distilled", [LeafKD(temperature=4.0)])):
            torch.manual_seed(100 + seed)
            tree = build_model("soft_tree", digits.spec, depth=5)
            fit(tree, digits, objectives=objectives, teacher_cache=cache, epochs=60, lr=1e-2, seed=seed, device="cpu")
            acc[mode].append(evaluate_split(tree, digits.test)[0])
    assert min(acc["distilled"]) > 0.9, acc
    assert sum(acc["distilled"]) / 3 > sum(acc["hard"]) / 3 - 0.02, acc


def test_leaf_kd_is_the_papers_loss_on_a_tree_and_soft_target_cross_entropy_otherwise() -> None:
    from distilens.distill import LeafKD, StepTensors, kd_loss, leaf_kd_loss

    tree = _tree().train()
    x, y, t = torch.randn(6, 5), torch.randint(0, 4, (6,)), torch.randn(6, 4) * 3
    paths = tree.log_path_probs(x)[0]
    step = StepTensors(tree(x), y, teacher_logits=t, leaf_log_paths=paths, leaf_log_probs=tree.leaf_log_probs())
    torch.testing.assert_close(LeafKD(temperature=2.0)(step), tree.paper_loss(x, F.softmax(t / 2, 1)), rtol=0, atol=0)
    torch.testing.assert_close(leaf_kd_loss(paths, tree.leaf_log_probs(), F.softmax(t, 1)), tree.paper_loss(x, F.softmax(t, 1)))
    # A non-tree student is a tree with one leaf: H(p_T, p_S) = KL(p_T ‖ p_S) + H(p_T) at T = 1.
    s = torch.randn(6, 4)
    p_t = F.softmax(t, 1)
    entropy = -(p_t * p_t.log()).sum(1).mean()
    value = LeafKD(temperature=1.0)(StepTensors(s, y, teacher_logits=t))
    torch.testing.assert_close(value, kd_loss(s, t, 1.0) + entropy)
    with pytest.raises(ValueError, match="temperature must be"):
        LeafKD(temperature=0.0)


def test_leaf_kd_in_fit_reads_the_paths_of_the_one_training_forward() -> None:
    from distilens.distill import LeafKD, SoftLabelCache

    bundle = tiny_bundle(n=48, shape=(5,), classes=4)
    teacher_logits = torch.randn(48, 4, generator=torch.Generator().manual_seed(1)) * 3
    cache = SoftLabelCache(teacher_logits, key="t")
    tree = _tree(penalty=0.0)
    calls: list[str] = []
    tree.register_forward_pre_hook(lambda m, args: calls.append("forward") if m.training else None)
    # One step over the whole split at lr 0: the logged term is the paper's loss of the untouched tree.
    result = fit(tree, bundle, objectives=[LeafKD(temperature=2.0)], teacher_cache=cache, epochs=1, batch_size=48,
                 lr=0.0, weight_decay=0.0, device="cpu")
    assert calls == ["forward"]
    expected = tree.train().paper_loss(bundle.train.inputs, F.softmax(teacher_logits / 2, 1))
    assert result.history[0]["leaf_kd"] == pytest.approx(float(expected.detach()), rel=1e-6)
