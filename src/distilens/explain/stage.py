"""The pipeline's explain stage: teacher vs student on the same test inputs, for several methods.

:func:`explain_models` returns the :class:`Comparison` objects (for the report's figures)
and the ``explanations`` block of metrics.json (DESIGN.md): agreement, faithfulness,
localisation where the split has masks, a sanity check, and sample indices for galleries.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..data.bundle import Split
from ..errors import DistilensError
from ..registry import Registry
from ..models.tap import last_spatial_layer
from .attribute import EXPLAINERS
from .compare import Comparison, compare
from .faithfulness import FaithBaseline, deletion_insertion
from .localization import mass_in_mask, pointing_game
from .sanity import cascading_randomization

__all__ = ["explain_models", "stratified_indices", "inapplicable_reason", "applicable_methods"]

#: Methods whose maps live on the input grid only for image models with spatial layers.
_SPATIAL = ("gradcam", "attention")
#: Methods that only call the model forward (no gradients).
_PERTURBATION = ("occlusion", "kernel_shap", "lime")


def stratified_indices(targets: Tensor, n: int, seed: int = 0) -> Tensor:
    """Up to ``n`` sample indices, classes taken in turn (round robin), seeded, sorted.

    Each class's indices are shuffled by a generator seeded with ``seed``; then one index
    per class is taken in turn until ``n`` are chosen, so every class is represented as
    evenly as the split allows.
    """
    g = torch.Generator().manual_seed(seed)
    pools = []
    for c in torch.unique(targets):
        members = (targets == c).nonzero().flatten()
        pools.append(members[torch.randperm(members.numel(), generator=g)])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(n, targets.numel()):
        for pool in pools:
            if depth < pool.numel() and len(chosen) < n:
                chosen.append(int(pool[depth]))
        depth += 1
    return torch.tensor(sorted(chosen), dtype=torch.long)


def inapplicable_reason(method: str, models: Sequence[nn.Module], example: Tensor) -> str | None:
    """Why ``method`` cannot compare these models on this data, or ``None`` when it can."""
    if method == "neuron_importance":
        return "scores the units of one layer, which differ between teacher and student; use it with attribute()"
    if method not in _PERTURBATION and any(getattr(m, "piecewise_constant_in_eval", False) for m in models):
        return "needs gradients, and a soft tree's max-path output is piecewise constant; use occlusion or kernel_shap"
    if method in _SPATIAL:
        if example.dim() != 4:
            return "needs image data"
        for model in models:
            try:
                last_spatial_layer(model, example[:1].to(next(model.parameters()).device))
            except DistilensError as exc:
                return f"cannot run here ({exc})"
    return None


def applicable_methods(
    methods: Sequence[str], registry: Registry[Any], reason: Callable[[str], str | None], skip_inapplicable: bool
) -> tuple[list[str], dict[str, str]]:
    """Split ``methods`` into those to run and ``{name: why not}`` for the rest.

    Unknown names fail with did-you-mean; an inapplicable method raises
    :class:`DistilensError` unless ``skip_inapplicable``; none left to run raises too.
    """
    run, skipped = [], {}
    for method in methods:
        registry.get(method)
        why = reason(method)
        if why is None:
            run.append(method)
        elif skip_inapplicable:
            skipped[method] = why
        else:
            raise DistilensError(f"explain method '{method}' {why}; pick another method or skip it")
    if not run:
        raise DistilensError(f"no explain method applies here ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return run, skipped


def _means(values: dict[str, Tensor]) -> dict[str, float | None]:
    out = {}
    for k, v in values.items():
        v = v[~torch.isnan(v)]
        out[k] = float(v.mean()) if v.numel() else None
    return out


def explain_models(
    teacher: nn.Module,
    student: nn.Module,
    split: Split,
    methods: Sequence[str],
    n_samples: int = 128,
    *,
    seed: int = 0,
    steps: int = 16,
    topk: float = 0.1,
    faithfulness_baseline: FaithBaseline = 0.0,
    sanity: bool = True,
    sanity_samples: int = 16,
    sanity_layers: int | None = None,
    pointing_tolerance: int = 0,
    gallery_size: int = 8,
    options: dict[str, dict[str, Any]] | None = None,
    skip_inapplicable: bool = False,
) -> tuple[list[Comparison], dict[str, Any]]:
    """Explain teacher and student on the same stratified samples of ``split`` and score them.

    Both models are explained for the teacher's predicted class. Per method: agreement
    (mean and bootstrap 95% interval of each score), deletion/insertion AUCs (Petsiuk et
    al. 2018) per model, and — when ``split.masks`` exists and maps are images —
    ``mass_in_mask`` and ``pointing_game`` per model. The sanity check (cascading
    randomisation, Adebayo et al. 2018) runs for the first method only, on the first
    ``sanity_samples`` samples, to keep the stage fast.

    Args:
        teacher, student: Classifiers returning (B, C) logits.
        split: The split to explain (the test split); its masks are used where present.
        methods: Explainer names; the first one fills the top-level keys.
        n_samples: Inputs to explain, stratified by class (see :func:`stratified_indices`).
        seed: Seeds the sample choice, the sampling explainers and the bootstrap.
        steps: Deletion/insertion steps.
        topk: Fraction of features in the top-k overlap.
        faithfulness_baseline: What a deleted feature becomes (see :func:`removal_baseline`).
        sanity: Run the sanity check.
        sanity_samples: Samples for the sanity check.
        sanity_layers: Randomise at most this many layers (default all).
        pointing_tolerance: Mask dilation in pixels for the pointing game.
        gallery_size: Indices per gallery.
        options: Per-method explainer options, e.g. ``{"integrated_gradients": {"n_steps": 64}}``.
        skip_inapplicable: Leave out methods that do not apply (gradcam on tables or MLPs,
            neuron_importance) instead of raising :class:`DistilensError`.

    Returns:
        The comparisons (one per method run) and the ``explanations`` block: ``method``,
        ``n_samples``, ``agreement`` (+ ``agreement_ci95``), ``faithfulness``,
        ``localization`` (with masks), ``sanity``, ``galleries`` (split indices), and
        ``methods`` — one such block per method — plus ``sample_indices`` and ``skipped``.

    Example:
        >>> comparisons, block = explain_models(teacher, student, bundle.test, ["gradcam"], 128, seed=0)
        >>> block["agreement"]["spearman"], block["galleries"]["same_class_disagree"]
    """
    options = options or {}
    idx = stratified_indices(split.targets, n_samples, seed)
    inputs = split.inputs[idx]
    masks = split.masks[idx] if split.masks is not None and inputs.dim() == 4 else None
    run, skipped = applicable_methods(
        methods, EXPLAINERS, lambda m: inapplicable_reason(m, (teacher, student), inputs), skip_inapplicable
    )

    comparisons, blocks = [], []
    for method in run:
        opts = {**({"seed": seed} if _takes_seed(method) else {}), **options.get(method, {})}
        cmp = compare(teacher, student, inputs, method=method, topk=topk, **opts)
        block = cmp.summary(seed=seed)
        block["faithfulness"] = {}
        for role, model, maps in (("teacher", teacher, cmp.teacher_maps), ("student", student, cmp.student_maps)):
            curves = deletion_insertion(model, inputs, maps, cmp.targets, steps=steps, baseline=faithfulness_baseline)
            block["faithfulness"][role] = _means({k: curves[k] for k in ("deletion_auc", "insertion_auc")})
            block["faithfulness"][role].update({f"{k}_curve": curves[k].mean(0).tolist() for k in ("deletion", "insertion")})
        if masks is not None and cmp.teacher_maps.dim() == 4:
            block["localization"] = {
                role: _means({"mass_in_mask": mass_in_mask(maps, masks), "pointing_game": pointing_game(maps, masks, pointing_tolerance)})
                for role, maps in (("teacher", cmp.teacher_maps), ("student", cmp.student_maps))
            }
        block["galleries"] = {k: [int(idx[i]) for i in v] for k, v in cmp.galleries(gallery_size).items()}
        comparisons.append(cmp)
        blocks.append(block)

    first = blocks[0]
    out: dict[str, Any] = {k: first[k] for k in ("method", "n_samples", "agreement", "agreement_ci95", "faithfulness")}
    if "localization" in first:
        out["localization"] = first["localization"]
    if sanity:
        cmp, method = comparisons[0], run[0]
        opts = {**({"seed": seed} if _takes_seed(method) else {}), **options.get(method, {})}
        x, t = inputs[:sanity_samples], cmp.targets[:sanity_samples]
        out["sanity"] = {"method": method} | {
            role: {k: v for k, v in cascading_randomization(model, x, t, method, seed=seed, max_layers=sanity_layers, **opts).items() if k != "method"}
            for role, model in (("teacher", teacher), ("student", student))
        }
    out["galleries"] = first["galleries"]
    out["methods"] = blocks
    out["sample_indices"] = idx.tolist()
    if skipped:
        out["skipped"] = skipped
    return comparisons, out


def _takes_seed(method: str) -> bool:
    """Whether the explainer draws random numbers (and so takes a ``seed`` option)."""
    return "seed" in inspect.signature(EXPLAINERS.get(method)).parameters
