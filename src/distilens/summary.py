"""What holds across seeds: per metric mean ± sd, and the paired difference student − label-only per seed.

One seed proves little on small data (on digits the distilled student's lead over the
label-only one was +0.24 ± 0.54 points over 8 seeds). :func:`aggregate` reads the
metrics.json of each seed's run and gives, for accuracy, prediction fidelity and
explanation agreement, the mean and standard deviation over seeds, and the paired
difference student − control per seed with its bootstrap 95% interval, the Student-t 95%
interval (:func:`t_interval`: the one the verdict reads, as a bootstrap over 5 values is too
narrow), the Wilcoxon signed-rank p-value (with 5 seeds it cannot go below 0.0625) and
wins/ties/losses (:func:`distilens.stats.paired_difference`). The unit is the seed: each seed's run draws
its own split (unless the seeds share a teacher), initial weights and data order.

Example:
    >>> summary = aggregate({0: json.load(open("runs/x/seed-0/metrics.json")), 1: ...})
    >>> summary["paired"]["student_minus_baseline"]["accuracy"]["ci_low"]
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

import torch

from .explain.evidence import CONTROLS, agreement_scale
from .stats import paired_difference

__all__ = ["aggregate", "spread", "t_interval", "SUMMARY_FORMAT", "MODEL_KEYS", "PAIRED_KEYS"]

SUMMARY_FORMAT = "distilens-seeds/1"
#: Per-model metrics.json keys summarised over seeds.
MODEL_KEYS = ("accuracy", "agreement", "predictive_kl", "ece")
#: Of those, the ones compared student − control per seed: accuracy and prediction fidelity.
PAIRED_KEYS = ("accuracy", "agreement", "predictive_kl")
_ROLES = ("teacher", "student", "baseline", "plain_kd")


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (n − 1; ``None`` below 2 values), n, and the values, over seeds.

    Example:
        >>> spread([0.5, 0.7])["sd"]
        0.1414...
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(finite) if finite else None,
        "sd": statistics.stdev(finite) if len(finite) >= 2 else None,
        "n": len(finite),
        "values": [None if v is None or not math.isfinite(v) else float(v) for v in values],
    }


def _get(d: Any, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) and math.isfinite(d) else None


def t_interval(differences: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Student-t interval of the mean: mean ± t(n−1) · sd / √n; ``(None, None)`` below 2 values.

    Over a handful of seeds the percentile bootstrap is too narrow (5 equal differences give
    an interval of width 0); the t-interval is the one the seeds' verdict reads.

    Example:
        >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0])]
        [-0.484, 4.484]
    """
    from scipy.stats import t  # scikit-learn's own dependency

    n = len(differences)
    if n < 2:
        return None, None
    mean, sd = statistics.fmean(differences), statistics.stdev(differences)
    half = float(t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def _paired(a: Sequence[float | None], b: Sequence[float | None], seed: int) -> dict[str, Any] | None:
    """The paired difference a − b over seeds (:func:`~distilens.stats.paired_difference`) plus its t-interval."""
    nan = float("nan")
    x = torch.tensor([nan if v is None else v for v in a], dtype=torch.float64)
    y = torch.tensor([nan if v is None else v for v in b], dtype=torch.float64)
    ok = ~torch.isnan(x) & ~torch.isnan(y)
    if not bool(ok.any()):
        return None
    out = paired_difference(x, y, seed=seed).to_json()
    out["t_ci_low"], out["t_ci_high"] = t_interval((x[ok] - y[ok]).tolist(), out["level"])
    return out


def _role_agreement(block: Mapping[str, Any], role: str, score: str) -> float | None:
    """A run's mean agreement of ``role`` with the teacher; runs without ``models`` hold the student's alone."""
    if block.get("models"):
        return _get(block, "models", role, "agreement", score)
    return _get(block, "agreement", score) if role == "student" else None


def _method_blocks(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per explanation method explained in every seed: role means, spreads, paired differences over seeds, the scale."""
    per_run = [{b["method"]: b for b in (m.get("explanations") or {}).get("methods") or []} for m in runs]
    methods = [name for name in per_run[0] if all(name in r for r in per_run)] if per_run else []
    out: dict[str, dict[str, Any]] = {}
    for name in methods:
        blocks = [r[name] for r in per_run]
        roles = [r for r in (blocks[0].get("models") or {"student": None}) if all(r in (b.get("models") or {"student": None}) for b in blocks)]
        scores = list(blocks[0].get("agreement") or {})
        spreads = {role: {s: spread([_role_agreement(b, role, s) for b in blocks]) for s in scores} for role in roles}
        models = {role: {"agreement": {s: spreads[role][s]["mean"] for s in scores}} for role in roles}
        block: dict[str, Any] = {"n_samples": blocks[0].get("n_samples"), "models": models, "spread": spreads}
        paired = {
            f"student_minus_{control}": {s: _paired(spreads["student"][s]["values"], spreads[control][s]["values"], 0) for s in scores}
            for control in CONTROLS if control in roles and "student" in roles
        }
        if paired:
            block["paired"] = paired
        scale = agreement_scale(models)
        if scale:
            block["scale"] = scale
        out[name] = block
    return out


def aggregate(metrics: Mapping[int, Mapping[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """summary.json of a set of seeds from each seed's metrics.json.

    Args:
        metrics: Seed → the content of that seed's metrics.json.
        seed: Seeds the bootstrap resampling.

    Returns:
        ``format``, ``seeds``; ``models``: role → key → :func:`spread`, for
        ``accuracy``, ``agreement``, ``predictive_kl``, ``ece``; ``simple_models``:
        ``majority``/``linear`` → accuracy spread; ``paired``: ``student_minus_baseline``
        (and ``student_minus_plain_kd``) → ``accuracy``/``agreement``/``predictive_kl`` → the
        paired difference over seeds (with ``t_ci_low``/``t_ci_high``);
        ``explanations``: method → ``models`` (role → mean agreement per score, as in a
        run's block), ``spread`` (role → score → :func:`spread`), ``paired`` and ``scale``;
        ``timing_s``: each seed's total.
    """
    seeds = sorted(metrics)
    runs = [metrics[s] for s in seeds]
    models = {
        role: {k: spread([_get(m, role, k) for m in runs]) for k in MODEL_KEYS if any(_get(m, role, k) is not None for m in runs)}
        for role in _ROLES if any(role in m for m in runs)
    }
    simple = {
        name: {"accuracy": spread([_get(m, "simple_models", name, "accuracy") for m in runs]),
               "model": next((m["simple_models"][name].get("model") for m in runs
                              if isinstance((m.get("simple_models") or {}).get(name), Mapping)), None)}
        for name in ("majority", "linear") if any(_get(m, "simple_models", name, "accuracy") is not None for m in runs)
    }
    paired: dict[str, dict[str, Any]] = {}
    for control in CONTROLS:
        if control not in models:
            continue
        rows = {k: _paired([_get(m, "student", k) for m in runs], [_get(m, control, k) for m in runs], seed) for k in PAIRED_KEYS}
        paired[f"student_minus_{control}"] = {k: v for k, v in rows.items() if v is not None}
    return {
        "format": SUMMARY_FORMAT,
        "seeds": seeds,
        "dataset": (runs[0].get("dataset") or {}).get("name") if runs else None,
        "models": models,
        "simple_models": simple,
        "paired": paired,
        "explanations": _method_blocks(runs),
        "timing_s": {str(s): _get(m, "timing_s", "total") for s, m in zip(seeds, runs)},
    }
