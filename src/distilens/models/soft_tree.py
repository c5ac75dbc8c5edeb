"""A soft decision tree student (Frosst & Hinton 2017, "Distilling a Neural Network Into a
Soft Decision Tree").

Inner node i routes an input right with probability p_i(x) = σ(β·(x·w_i + b_i)), with one
learned inverse temperature β; leaf ℓ holds a class distribution Q^ℓ = softmax(φ^ℓ). The
path probability P^ℓ(x) is the product of the branch probabilities from the root to ℓ.

What ``forward`` returns, so that every objective (CE, KD on soft labels …) works unchanged:

* train mode: ``log Σ_ℓ P^ℓ(x) Q^ℓ`` — the log of the path-weighted mixture of the leaf
  distributions, computed in log space. Its soft-max is the mixture itself, so CE on these
  logits is −Σ_k T_k log Σ_ℓ P^ℓ Q^ℓ_k. The paper's loss is the path-weighted leaf
  cross-entropy Σ_ℓ P^ℓ · (−Σ_k T_k log Q^ℓ_k) (:meth:`SoftDecisionTree.paper_loss`); by
  Jensen the mixture's CE is a lower bound of it, equal when the routing is hard. We train
  on the mixture so that KD at any temperature applies to one distribution per input.
* eval mode: ``log Q^ℓ*`` of the leaf ℓ* reached by following the more likely branch at
  every node (the paper's "maximum path" prediction, which makes the tree interpretable).

The paper's balance penalty, C = −λ Σ_i 2^(−d_i) · ½(log α_i + log(1 − α_i)) with
α_i = Σ_x P^i(x) p_i(x) / Σ_x P^i(x) over the batch (d_i the depth of node i, the root at
0), is computed on every train-mode forward and returned by :meth:`regularization`, which
:func:`distilens.distill.fit` adds to the loss.

Recipe (measured on digits, BENCHMARKS.md "Soft tree and loss defaults, measured"):
depth 5, AdamW lr 1e-2, 60 epochs, λ = 0.1; distil with the ``leaf_kd`` objective at
T = 4 — the paper's path-weighted leaf loss on the teacher's soft targets — rather than
``kd`` on the mixture (which, at T = 1, 2 or 4, was 0.3–0.5 points *below* the
label-trained tree). ``leaf_kd`` has the best mean of what we tried but is only level
with the label-trained tree: +0.18 ± 1.39 points over 40 paired seeds (standard error
0.22); at depth 8 (2 points better for both) −0.23 ± 0.93 over 30 seeds. The paper's gain
does not show on digits.

Example:
    >>> tree = SoftDecisionTree(in_features=64, num_classes=10, depth=4)
    >>> logits = tree(torch.randn(8, 64))            # (8, 10)
    >>> nodes, probs, leaf = tree.decision_path(torch.randn(2, 64))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SoftDecisionTree"]


class SoftDecisionTree(nn.Module):
    """A complete binary soft decision tree with ``2**depth`` leaves (nodes in heap order).

    Args:
        in_features: Input width F (inputs are flattened).
        num_classes: Number of classes C.
        depth: Depth D ≥ 1 (2^D − 1 inner nodes, 2^D leaves).
        penalty: λ of the balance penalty (0 disables it).
        beta_init: Initial inverse temperature β (learned, kept positive as exp(log β)).
    """

    #: In eval mode the output is the max-path leaf: piecewise constant in the input, so
    #: gradient explainers see no signal; perturbation explainers (occlusion, SHAP) apply.
    piecewise_constant_in_eval = True

    def __init__(self, in_features: int, num_classes: int, depth: int = 4, penalty: float = 0.1, beta_init: float = 1.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be ≥ 1, got {depth}")
        if penalty < 0 or beta_init <= 0:
            raise ValueError(f"penalty must be ≥ 0 and beta_init > 0, got {penalty}, {beta_init}")
        self.depth, self.num_classes, self.penalty = int(depth), int(num_classes), float(penalty)
        self.inner = nn.Linear(in_features, 2**depth - 1)  # row i: w_i, b_i of inner node i
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta_init)))
        self.leaf_logits = nn.Parameter(torch.randn(2**depth, num_classes) * 0.1)  # φ^ℓ
        # 2^(−d_i) for the inner nodes in heap order (node i sits at depth ⌊log2(i + 1)⌋).
        weights = torch.tensor([2.0 ** -math.floor(math.log2(i + 1)) for i in range(2**depth - 1)])
        self.register_buffer("node_weights", weights, persistent=False)
        self._penalty: Tensor | None = None

    def branch_logits(self, x: Tensor) -> Tensor:
        """(B, *in) → (B, 2^D − 1) β·(x·w_i + b_i): p_i = σ of it is the right-branch probability."""
        return self.log_beta.exp() * self.inner(x.flatten(1))

    def log_path_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log P of every leaf (B, 2^D), log P of every inner node (B, 2^D − 1)), in log space."""
        a = self.branch_logits(x)
        log_p = a.new_zeros(a.shape[0], 1)  # the root is reached with probability 1
        reach = []
        for d in range(self.depth):
            reach.append(log_p)
            level = a[:, 2**d - 1 : 2 ** (d + 1) - 1]  # (B, 2^d) nodes of depth d, left to right
            # children of the j-th node of a level are 2j (left, 1 − p) and 2j + 1 (right, p)
            log_p = torch.stack([log_p + F.logsigmoid(-level), log_p + F.logsigmoid(level)], dim=2).flatten(1)
        return log_p, torch.cat(reach, dim=1)

    def leaf_log_probs(self) -> Tensor:
        """(L, C) log Q^ℓ: the class distribution of every leaf, in log space."""
        return F.log_softmax(self.leaf_logits, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *in) → (B, C) logits: log of the path mixture (train) or of the max-path leaf (eval).

        In train mode it calls :meth:`log_path_probs` exactly once (the :class:`LeafModel`
        capability), so the trainer's tap reads the paths of this forward for ``leaf_kd``.
        """
        log_q = self.leaf_log_probs()  # (L, C)
        if not self.training:
            return log_q[self.decision_path(x)[2]]
        log_leaf, log_reach = self.log_path_probs(x)
        self._penalty = self._balance_penalty(log_reach, self.branch_logits(x)) if self.penalty > 0 else None
        # log Σ_ℓ P^ℓ Q^ℓ_k: (B, L, 1) + (1, L, C) → logsumexp over leaves → (B, C)
        return torch.logsumexp(log_leaf.unsqueeze(2) + log_q.unsqueeze(0), dim=1)

    def _balance_penalty(self, log_reach: Tensor, a: Tensor) -> Tensor:
        reach = log_reach.exp()  # (B, N) P^i(x)
        alpha = (reach * torch.sigmoid(a)).sum(0) / reach.sum(0).clamp_min(1e-12)
        alpha = alpha.clamp(1e-6, 1 - 1e-6)  # a node no input reaches must not give log 0
        per_node = -0.5 * (torch.log(alpha) + torch.log1p(-alpha))
        return self.penalty * (self.node_weights * per_node).sum()

    def regularization(self) -> Tensor:
        """The balance penalty of the latest train-mode forward (0 when disabled or none ran).

        Reading it hands it over: the model then holds no graph (which would keep the last
        step's activations alive and make the model impossible to deep-copy).
        """
        penalty, self._penalty = self._penalty, None
        return self.leaf_logits.new_zeros(()) if penalty is None else penalty

    def paper_loss(self, x: Tensor, target_probs: Tensor) -> Tensor:
        """Frosst & Hinton's loss Σ_ℓ P^ℓ(x) · (−Σ_k T_k log Q^ℓ_k), batch mean.

        Args:
            x: (B, *in) inputs.
            target_probs: (B, C) target distribution T (one-hot labels or soft teacher labels).
        """
        log_leaf, _ = self.log_path_probs(x)
        ce_per_leaf = -(target_probs.float() @ self.leaf_log_probs().T)  # (B, L)
        return (log_leaf.exp() * ce_per_leaf).sum(1).mean()

    @torch.no_grad()
    def decision_path(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The max-probability path of each input.

        Returns:
            ``(nodes, probs, leaf)``: (B, D) int64 inner-node ids (heap order, root 0) along
            the path, (B, D) probability of the branch taken at each, (B,) int64 leaf index
            (0 … 2^D − 1, left to right; the eval-mode prediction is argmax Q^leaf).
        """
        p = torch.sigmoid(self.branch_logits(x))
        node = torch.zeros(x.shape[0], dtype=torch.long, device=p.device)
        nodes, probs = [], []
        for _ in range(self.depth):
            pn = p.gather(1, node.unsqueeze(1)).squeeze(1)
            right = pn > 0.5
            nodes.append(node)
            probs.append(torch.where(right, pn, 1 - pn))
            node = 2 * node + 1 + right.long()
        return torch.stack(nodes, 1), torch.stack(probs, 1), node - (2**self.depth - 1)
