"""The soft decision tree drawn for the report: each inner node's filter, each leaf's class,
and the decision path of a few test inputs (Frosst & Hinton 2017, Fig. 2)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..models.soft_tree import SoftDecisionTree
from .figures import plt, png_bytes

__all__ = ["tree_figure", "decision_paths"]


def tree_figure(tree: SoftDecisionTree, shape: Sequence[int], class_names: Sequence[str]) -> bytes:
    """Inner nodes as their weight vectors (images shown as filters), leaves as their top class.

    Node i at depth d sits in row d; the left child of i is 2i+1, the right 2i+2. Filters
    use a diverging scale per node: orange pushes an input right, purple left.
    """
    depth = tree.depth
    w = tree.inner.weight.detach().cpu()  # (N, F)
    leaf = torch.softmax(tree.leaf_logits.detach().cpu(), dim=1)  # (L, C)
    n_leaves = 2**depth
    image = len(shape) == 3 and shape[1] * shape[2] > 1
    fig = plt.figure(figsize=(max(6.0, 0.75 * n_leaves), 1.2 * (depth + 1)))
    for node in range(2**depth - 1):
        d = int(np.floor(np.log2(node + 1)))
        pos = node - (2**d - 1)
        width = 1.0 / 2**d
        ax = fig.add_axes([(pos + 0.5) * width - 0.035, 1 - (d + 1) / (depth + 1.2), 0.07, 0.7 / (depth + 1.2)])
        filt = w[node].reshape(shape).sum(0).numpy() if image else w[node].numpy()[None, :]
        vmax = float(np.abs(filt).max()) or 1e-12
        ax.imshow(filt, cmap="PuOr_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"node {node}", fontsize=6)
    for j in range(n_leaves):
        ax = fig.add_axes([(j + 0.5) / n_leaves - 0.03, 0.02, 0.06, 0.6 / (depth + 1.2)])
        p = leaf[j].numpy()
        ax.bar(range(len(p)), p, color="#0072B2")
        ax.set_ylim(0, 1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"leaf {j}: {class_names[int(p.argmax())]}", fontsize=6)
    fig.suptitle("soft decision tree: node filters (orange → right branch) and leaf class distributions", fontsize=8)
    return png_bytes(fig)


@torch.no_grad()
def decision_paths(tree: SoftDecisionTree, inputs: Tensor, targets: Tensor, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per input: its true class, the nodes and branch probabilities on its path, the leaf and prediction."""
    was_training = tree.training
    tree.eval()
    try:
        nodes, probs, leaf = tree.decision_path(inputs)
        pred = tree(inputs).argmax(1)
    finally:
        tree.train(was_training)
    rows = []
    first_leaf = 2**tree.depth - 1  # heap id of leaf 0
    for i in range(inputs.shape[0]):
        visited = [int(n) for n in nodes[i]] + [first_leaf + int(leaf[i])]  # every node, then the leaf
        steps = " → ".join(
            f"{n} ({'right' if visited[k + 1] == 2 * n + 2 else 'left'} {float(probs[i, k]):.2f})"
            for k, n in enumerate(visited[:-1])
        )
        rows.append({"true": class_names[int(targets[i])], "path": steps, "leaf": int(leaf[i]),
                     "prediction": class_names[int(pred[i])]})
    return rows
