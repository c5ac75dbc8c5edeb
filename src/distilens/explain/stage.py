"""The explain stage of a run, for every kind of data: explain, score, save.

:func:`~.methods.choose_methods` checks the configured methods before any training;
:func:`explain_models` explains teacher and student on the same stratified samples and
returns the :class:`~.comparison.Comparison` objects and the ``explanations`` block of
metrics.json; :func:`explain_stage` does both halves of the stage on a run folder. The
caller builds the :class:`~.inputs.ExplainInputs` (what each model reads, how maps meet);
nothing here depends on the kind of data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..config import ExplainConfig
from ..data.bundle import Split
from ..errors import DistilensError
from ..timings import Timings
from .attribute import attribute, predicted_class
from .comparison import Comparison
from .compare import compare
from .evidence import CONTROLS, ROLES, TEACHER_VIEW_ROLES, agreement_scale, paired_differences
from .explainers import get_explainer
from .faithfulness import deletion_insertion
from .hygiene import model_device
from .inputs import ExplainInputs, ModelInputs
from .localization import mass_in_mask, pointing_game
from .methods import split_methods
from .sanity import cascading_randomization
from .teacher_memo import TeacherMemo

__all__ = ["stratified_indices", "explain_models", "explain_stage"]


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


def _means(values: dict[str, Tensor]) -> dict[str, float | None]:
    out = {}
    for k, v in values.items():
        v = v[~torch.isnan(v)]
        out[k] = float(v.mean()) if v.numel() else None
    return out


def explain_models(
    teacher: nn.Module,
    student: nn.Module,
    data: ExplainInputs | Split,
    methods: Sequence[str],
    n_samples: int = 128,
    *,
    seed: int = 0,
    steps: int = 16,
    topk: float | None = None,
    faithfulness_baseline: Any = None,
    sanity: bool = True,
    sanity_samples: int = 16,
    sanity_layers: int | None = None,
    pointing_tolerance: int = 0,
    gallery_size: int = 8,
    options: dict[str, dict[str, Any]] | None = None,
    skip_inapplicable: bool = False,
    others: Mapping[str, nn.Module] | None = None,
    memo: TeacherMemo | None = None,
) -> tuple[list[Comparison], dict[str, Any]]:
    """Explain teacher and student on the same stratified samples and score them, for any kind of data.

    Both models are explained for the same class (``data.targets``, default the teacher's
    prediction), each on its own inputs. Per method: agreement on the aligner's units
    (mean, bootstrap 95% interval and spread of each score), deletion/insertion AUCs
    (Petsiuk et al. 2018) per model on its own features (pixels, columns, tokens), and —
    where ``data.masks`` exists and maps are images — ``mass_in_mask`` and
    ``pointing_game`` per model. The sanity check (cascading randomisation, Adebayo et al.
    2018) runs for the first method only, on the first ``sanity_samples`` samples, to keep
    the stage fast.

    ``others`` adds the controls and reference points (:mod:`.evidence`), explained with
    the same methods, samples and targets against the same teacher maps: their agreement
    goes into ``models``, the per-sample paired difference student − control into
    ``paired``, the scale between floor and ceiling into ``scale``, and the controls get
    faithfulness (and localisation) rows of their own.

    Args:
        teacher, student: Classifiers returning (B, C) logits.
        data: What to explain (:class:`~.inputs.ExplainInputs`); an image or table
            :class:`~distilens.data.Split` is taken as :meth:`ExplainInputs.from_split`.
        methods: Explainer names; the first one fills the top-level keys.
        n_samples: Samples to explain, stratified by label (see :func:`stratified_indices`).
        seed: Seeds the sample choice, the sampling explainers and the bootstrap.
        steps: Deletion/insertion steps.
        topk: Fraction of units in the top-k overlap; default the aligner's.
        faithfulness_baseline: What a deleted feature becomes (see
            :func:`~.faithfulness.deletion_insertion`); default 0 for images and rows, and
            each text view's ``replace_id`` (else the pad id) for tokens.
        sanity: Run the sanity check.
        sanity_samples: Samples for the sanity check.
        sanity_layers: Randomise at most this many steps of the cascade (default all; see :func:`~.sanity.parameter_layers`).
        pointing_tolerance: Mask dilation in pixels for the pointing game.
        gallery_size: Indices per gallery.
        options: Per-method explainer options, e.g. ``{"integrated_gradients": {"n_steps": 64}}``.
        skip_inapplicable: Leave out methods that do not apply (gradcam on tables or MLPs,
            rollout without attention, neuron_importance) instead of raising :class:`DistilensError`.
        others: Role → model for the roles of :data:`~.evidence.ROLES` (``baseline``,
            ``plain_kd``, ``teacher_reseed``, ``init``); ``teacher_reseed`` reads the
            teacher's inputs, the others the student's.
        memo: Where the teacher's maps, faithfulness and sanity results are read from when
            an earlier run computed them for the same teacher, samples and settings, and kept
            for the next (:class:`~.teacher_memo.TeacherMemo`); ``None``: always computed.

    Returns:
        The comparisons (one per method run) and the ``explanations`` block: ``level``
        (pixel, feature, word), ``method``, ``n_samples``, ``agreement`` (+ ``agreement_ci95``,
        ``agreement_std``), ``same_prediction``, ``faithfulness``, ``localization`` (with
        masks), ``sanity``, ``galleries`` (split indices), with ``others``: ``models``
        (role → the same agreement keys), ``paired`` and ``scale``; and ``methods`` — one
        such block per method — plus ``sample_indices``, ``skipped``, ``timing_s`` (seconds
        of ``teacher_attributions``, ``attributions`` of the other models, ``faithfulness``,
        ``sanity``) and, with ``memo``, ``teacher_memo`` (``hit``, ``computed`` or ``partial``).

    Example:
        >>> comparisons, block = explain_models(teacher, student, bundle.test, ["gradcam"], 128, seed=0)
        >>> block["agreement"]["spearman"], block["galleries"]["same_class_disagree"]
    """
    inputs = data if isinstance(data, ExplainInputs) else ExplainInputs.from_split(data)
    if len(inputs) == 0 or n_samples < 1:
        raise DistilensError("explain: no samples to explain; pass at least one sample and n_samples >= 1")
    options = options or {}
    idx = stratified_indices(inputs.labels, n_samples, seed)
    sample = inputs.take(idx)
    run, skipped = split_methods(methods, teacher, student, sample, skip_inapplicable)
    unknown = sorted(set(others or {}) - set(ROLES))
    if unknown:
        raise ValueError(f"explain_models: unknown roles {unknown}; known: {', '.join(ROLES)}")
    views = {role: (model, sample.teacher if role in TEACHER_VIEW_ROLES else sample.student) for role, model in (others or {}).items()}

    models = {"teacher": (teacher, sample.teacher), "student": (student, sample.student)}
    faithful = {**models, **{role: views[role] for role in CONTROLS if role in views}}
    clock = Timings()
    t_pred = predicted_class(teacher, sample.teacher.inputs.to(model_device(teacher))).cpu()  # once for every method
    target = t_pred if sample.targets is None else sample.targets
    comparisons = []
    for method in run:
        opts = {**_seed_option(method, sample.teacher, seed), **options.get(method, {})}
        with clock.timed("teacher_attributions"):
            t_maps = _teacher_maps(teacher, sample.teacher, target, method, opts, memo)
        with clock.timed("attributions"):
            comparisons.append(compare(
                teacher, student, sample.teacher, student_inputs=sample.student, align=sample.align, method=method,
                target=target, topk=topk, others=views, teacher_maps=t_maps, teacher_pred=t_pred, progress=False, **opts,
            ))
    blocks = []
    for cmp in comparisons:
        block = cmp.summary(seed=seed)
        if views:
            block["paired"] = paired_differences(cmp, seed=seed)
            if any(role not in CONTROLS for role in views):
                block["scale"] = agreement_scale(block["models"])
        with clock.timed("faithfulness"):
            block["faithfulness"] = _faithfulness(cmp, faithful, steps, faithfulness_baseline, memo)
        if sample.masks is not None and cmp.teacher_maps.dim() == 4:
            block["localization"] = _localization(cmp, sample.masks, pointing_tolerance)
        block["galleries"] = {k: [int(idx[i]) for i in v] for k, v in cmp.galleries(gallery_size).items()}
        blocks.append(block)

    first = blocks[0]
    out: dict[str, Any] = {"level": sample.align.level}
    keys = ("method", "n_samples", "agreement", "agreement_ci95", "agreement_std", "same_prediction", "faithfulness")
    out.update({k: first[k] for k in keys})
    for key in ("localization", "models", "paired", "scale"):
        if key in first:
            out[key] = first[key]
    if sanity:
        method, rows = run[0], torch.arange(min(sanity_samples, len(sample)))
        with clock.timed("sanity"):
            out["sanity"] = {"method": method} | {
                role: _sanity(model, view.take(rows), target[rows], method, seed, sanity_layers, options.get(method, {}),
                              memo if role == "teacher" else None)
                for role, (model, view) in models.items()
            }
    out["galleries"] = first["galleries"]
    out["methods"] = blocks
    out["sample_indices"] = idx.tolist()
    out["skipped"] = skipped
    out["timing_s"] = clock.to_json()
    if memo is not None:
        out["teacher_memo"] = memo.status
    return comparisons, out


def _teacher_maps(
    teacher: nn.Module, view: ModelInputs, target: Tensor, method: str, options: dict[str, Any], memo: TeacherMemo | None
) -> Tensor:
    """The teacher's maps of ``method`` for ``target`` on its own inputs, through ``memo`` where given."""
    given = {**view.options(method), **options}

    def compute() -> Tensor:
        return attribute(teacher, view.inputs, target, method, **given)

    if memo is None:
        return compute()
    return memo.tensor("maps", view.inputs, target, {"method": method, **given}, compute)


def _faithfulness(
    cmp: Comparison, models: Mapping[str, tuple[nn.Module, ModelInputs]], steps: int, baseline: Any,
    memo: TeacherMemo | None = None,
) -> dict[str, dict[str, Any]]:
    """Per model: mean deletion and insertion AUCs and curves of its own maps on its own inputs (the teacher's through ``memo``)."""
    out = {}
    for role, (model, view) in models.items():
        maps = cmp.role_maps(role)
        removed = baseline if view.replace_id is None else view.replace_id

        def compute(model: nn.Module = model, view: ModelInputs = view, maps: Tensor = maps, removed: Any = removed
                    ) -> dict[str, Any]:
            curves = deletion_insertion(model, view.inputs, maps, cmp.targets, steps=steps, baseline=removed, keep=view.keep)
            scores = _means({k: curves[k] for k in ("deletion_auc", "insertion_auc")})
            return scores | {f"{k}_curve": _mean_curve(curves[k]) for k in ("deletion", "insertion")}

        if memo is None or role != "teacher":
            out[role] = compute()
        else:
            settings = {"maps": maps, "steps": steps, "baseline": removed, "keep": view.keep}
            out[role] = memo.record("faithfulness", view.inputs, cmp.targets, settings, compute)
    return out


def _localization(cmp: Comparison, masks: Tensor, tolerance: int) -> dict[str, dict[str, float | None]]:
    """Per model (teacher, student and the others): mean share of the map inside the object mask, and pointing-game hits."""
    return {
        role: _means({"mass_in_mask": mass_in_mask(maps, masks), "pointing_game": pointing_game(maps, masks, tolerance)})
        for role, maps in [(r, cmp.role_maps(r)) for r in ("teacher", "student", *cmp.others)]
    }


def _mean_curve(curves: Tensor) -> list[float | None]:
    """(B, S+1) curves → their mean over samples; samples with undefined points (NaN) are left out there."""
    mean = curves.nanmean(0) if bool(torch.isnan(curves).any()) else curves.mean(0)
    return [None if math.isnan(v) else v for v in mean.tolist()]


def _seed_option(method: str, view: ModelInputs, seed: int) -> dict[str, int]:
    """``{"seed": seed}`` for the methods that draw random numbers on these inputs, else nothing."""
    return {"seed": seed} if get_explainer(method).implementation(view.kind).takes("seed") else {}


def _sanity(
    model: nn.Module, view: ModelInputs, target: Tensor, method: str, seed: int, layers: int | None,
    given: Mapping[str, Any], memo: TeacherMemo | None = None,
) -> dict[str, Any]:
    """One model's cascading randomisation on its own inputs, without the repeated method name (through ``memo`` where given)."""
    opts = {**_seed_option(method, view, seed), **view.options(method), **given}

    def compute() -> dict[str, Any]:
        out = cascading_randomization(model, view.inputs, target, method, seed=seed, max_layers=layers, **opts)
        return {k: v for k, v in out.items() if k != "method"}

    if memo is None:
        return compute()
    return memo.record("sanity", view.inputs, target, {"method": method, "seed": seed, "layers": layers, **opts}, compute)


def explain_stage(
    teacher: nn.Module,
    student: nn.Module,
    inputs: ExplainInputs,
    methods: Sequence[str],
    folder: str | Path,
    *,
    config: ExplainConfig | None = None,
    seed: int = 0,
    skipped: Mapping[str, str] | None = None,
    others: Mapping[str, nn.Module] | None = None,
    memo: TeacherMemo | None = None,
) -> dict[str, Any]:
    """The pipeline's explain stage: explain, score, keep the maps in ``folder``, return metrics.json's block.

    The maps go where the aligner keeps them — explanations.safetensors (images, tables) or
    explanations/text.json (words) — and the returned ``explanations`` block has the same
    keys for every kind of data (:func:`explain_models`).

    Args:
        teacher, student: The trained models.
        inputs: The split to explain, as each model reads it (built by the data modality).
        methods: The methods :func:`choose_methods` kept (may be empty).
        folder: The run folder (or its staging copy).
        config: ``explain`` section of the run config (n_samples, steps, sanity, sanity_samples,
            sanity_layers).
        seed: The run's seed.
        skipped: Methods left out at :func:`choose_methods`, with the reason; recorded.
        others: The controls and reference points to explain as well (role → model, see
            :func:`explain_models`): the run passes its label-only ``baseline``.
        memo: The teacher's explanations kept by content (see :func:`explain_models`).

    Returns:
        The ``explanations`` block; ``{"methods": [], "skipped": {...}}`` when no method runs.

    Example:
        >>> run, skipped = choose_methods(cfg.explain.methods, teacher, student, inputs, explicit=False)
        >>> block = explain_stage(teacher, student, inputs, run, run_dir, config=cfg.explain, seed=cfg.seed, skipped=skipped)
    """
    if not methods:
        return {"methods": [], "skipped": dict(skipped or {})}
    cfg = config or ExplainConfig()
    comparisons, block = explain_models(
        teacher, student, inputs, methods, cfg.n_samples, seed=seed, steps=cfg.steps,
        sanity=cfg.sanity, sanity_samples=cfg.sanity_samples, sanity_layers=cfg.sanity_layers, others=others,
        memo=memo,
    )
    rows = torch.tensor(block["sample_indices"], dtype=torch.long)
    inputs.align.take(rows).save(
        Path(folder), comparisons, rows=rows, labels=inputs.labels[rows], class_names=inputs.class_names,
        skipped=block["skipped"],
    )
    block["skipped"] = {**block["skipped"], **(skipped or {})}
    return block
