"""The verdict in words: what a run (or a set of seeds) shows, and what it does not.

Pure: metrics in, lines out. The report's first lines and the console's last lines are the
same :class:`VerdictLine` objects. The questions, in this order:

1. Is the teacher worth distilling? No better than predicting the majority class, or than a
   linear model on the same inputs (metrics.json's ``simple_models``), is red — first.
2. Did the student keep the teacher's accuracy (``report.max_accuracy_drop``)?
3. Does it predict like the teacher (top-1 agreement ≥ ``report.min_agreement``, and KL)?
4. Against the label-only student, per test sample (``fidelity``) or per seed: does
   distillation add accuracy, and agreement with the teacher's predictions?
5. Per explanation method: does the student look where the teacher looks more than the
   label-only student does (``explanations.methods[i].paired``)? Only an interval that
   excludes zero counts as shown; an agreement near zero (|Spearman| < :data:`NEAR_ZERO`)
   is flagged whatever the comparison says; with reference points, the share of the gap
   between label-only and teacher-vs-teacher agreement that distillation closes.

Statuses: ``red`` (a problem), ``amber`` (borderline, or worth a look), ``green`` (shown),
``grey`` (not shown, or information). A difference whose 95% interval contains 0 is never
green: "+0.0 points vs label-only" reads "no gain shown".

Example:
    >>> for line in verdict_lines(json.loads(Path("runs/x/metrics.json").read_text())):
    ...     print(line.console())
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

__all__ = ["VerdictLine", "verdict_lines", "summary_verdict_lines", "print_verdict", "NEAR_ZERO", "DEFAULT_THRESHOLDS"]

Status = Literal["red", "amber", "green", "grey"]

#: An explanation agreement (Spearman) below this in absolute value says the maps barely relate.
NEAR_ZERO = 0.1
#: ``report`` thresholds of a config that sets none (ReportConfig's defaults).
DEFAULT_THRESHOLDS: dict[str, float] = {"max_accuracy_drop": 0.01, "min_agreement": 0.95, "margin": 0.01}
#: The agreement score the explanation lines lead with (the explain stage's, distilens.explain.evidence.HEADLINE).
HEADLINE = "spearman"

_MARK = {"red": "✗", "amber": "!", "green": "✓", "grey": "–"}
#: Student − plain-KD student in a run with an explanation-guided loss: sign of the interval → (status, words).
_PLAIN_KD: dict[int, tuple[Status, str]] = {
    1: ("green", "the explanation loss bought agreement beyond plain KD"),
    -1: ("red", "plain KD agrees more with the teacher than with the explanation loss"),
    0: ("grey", "not shown that the explanation loss adds agreement beyond plain KD"),
}
_STYLE = {"red": "bold red", "amber": "yellow", "green": "green", "grey": "dim"}


@dataclass(frozen=True)
class VerdictLine:
    """One answer of the verdict.

    Attributes:
        status: ``red``, ``amber``, ``green`` or ``grey``.
        topic: What it is about, in a word or two (the report's first column).
        text: The answer in words, with the numbers.
    """

    status: Status
    topic: str
    text: str

    def console(self) -> str:
        """Plain text for a terminal: ``"✓ accuracy: …"`` (✗ red, ! amber, ✓ green, – grey)."""
        return f"{_MARK[self.status]} {self.topic}: {self.text}"

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, "topic": self.topic, "text": self.text}


# --------------------------------------------------------------------------- formatting


def _pts(x: float) -> str:
    """A fraction as signed percentage points: 0.012 → '+1.2'."""
    return f"{100 * x:+.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _interval(pd: Mapping[str, Any]) -> tuple[str, float | None, float | None]:
    """The interval the verdict reads: over seeds the Student-t one (``t_ci_*``), per sample the bootstrap's."""
    if "t_ci_low" in pd:
        return "t-interval", pd.get("t_ci_low"), pd.get("t_ci_high")
    return "CI", pd.get("ci_low"), pd.get("ci_high")


def _ci(pd: Mapping[str, Any], fmt: Any, over: str) -> str:
    """'(95% CI +0.02 to +0.08, Wilcoxon p 0.004, 128 test inputs)'; ``fmt`` formats a number without its unit."""
    kind, lo, hi = _interval(pd)
    level = round(100 * pd.get("level", 0.95))
    parts = [f"{level}% {kind} {fmt(lo)} to {fmt(hi)}" if lo is not None and hi is not None else f"no {level}% {kind}"]
    if pd.get("p_value") is not None:
        parts.append(f"Wilcoxon p {pd['p_value']:.2g}")
    if "t_ci_low" in pd:
        parts.append(f"wins/ties/losses {pd.get('wins')}/{pd.get('ties')}/{pd.get('losses')}")
    parts.append(over.format(n=pd.get("n")))
    return "(" + ", ".join(parts) + ")"


def _shown(pd: Mapping[str, Any] | None) -> int:
    """+1 when the interval lies above 0, −1 below, 0 when it contains 0 (or is missing)."""
    if not pd:
        return 0
    _, lo, hi = _interval(pd)
    if lo is None or hi is None:
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _num(d: Mapping[str, Any] | None, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) and math.isfinite(d) else None


# --------------------------------------------------------------------------- the questions


def _with_reference(simple: Mapping[str, Any] | None, reference: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``simple_models`` whose linear model is a text run's TF-IDF + logistic regression ``reference``
    where that one scores higher: the teacher is judged against the stronger cheap model."""
    accuracy = (reference or {}).get("test_accuracy")
    linear = _num(simple or {}, "linear", "accuracy")
    if accuracy is None or (linear is not None and linear >= accuracy):
        return simple
    return {**(simple or {}), "linear": {"model": "TF-IDF + logistic regression", "accuracy": accuracy}}


def _teacher_line(teacher_acc: float | None, simple: Mapping[str, Any] | None, margin: float, n_seeds: int | None) -> list[VerdictLine]:
    """Is the teacher better than the majority class and a linear model? Red when not: first line."""
    if teacher_acc is None or not simple:
        return []
    majority = _num(simple, "majority", "accuracy")
    linear = _num(simple, "linear", "accuracy")
    linear_name = (simple.get("linear") or {}).get("model", "a linear model")
    what = f"teacher {_pct(teacher_acc)}" + (f" (mean of {n_seeds} seeds)" if n_seeds else "")
    if majority is not None and teacher_acc <= majority + 1e-9:
        return [VerdictLine("red", "teacher", f"{what} is no better than always predicting the majority class "
                                              f"({_pct(majority)}): there is nothing to distil")]
    if linear is not None and teacher_acc <= linear + 1e-9:
        return [VerdictLine("red", "teacher", f"{what} is no better than a linear model on the same inputs "
                                              f"({linear_name}: {_pct(linear)}): distilling it is pointless")]
    refs = [f"the majority class ({_pct(majority)})"] if majority is not None else []
    if linear is not None:
        refs.append(f"a linear model ({linear_name}: {_pct(linear)})")
    if linear is not None and teacher_acc - linear < margin:
        return [VerdictLine("amber", "teacher", f"{what} is barely above {' and '.join(refs)}: "
                                                f"a {100 * (teacher_acc - linear):.1f}-point lead is little to distil")]
    return [VerdictLine("green", "teacher", f"{what} is above {' and '.join(refs)}")] if refs else []


def _accuracy_line(t: float, s: float, limit: float, margin: float, seeds: str = "") -> VerdictLine:
    drop = t - s
    status: Status = "green" if drop <= limit else "amber" if drop <= limit + margin else "red"
    verb = "keeps" if status == "green" else "loses"
    return VerdictLine(status, "accuracy", f"the student {verb} the teacher's accuracy{seeds}: {_pct(s)} vs {_pct(t)} "
                                           f"({_pts(-drop)} points; at most {100 * limit:.1f} may be lost)")


def _fidelity_line(a: float, kl: float | None, need: float, margin: float, seeds: str = "") -> VerdictLine:
    status: Status = "green" if a >= need else "amber" if a >= need - margin else "red"
    kl_text = f", KL(teacher ‖ student) {kl:.3f} nats" if kl is not None else ""
    lead = "the student predicts like the teacher" if status == "green" else "the student often predicts otherwise than the teacher"
    return VerdictLine(status, "predictions", f"{lead}{seeds}: the same top class on {_pct(a)} of test inputs "
                                              f"(at least {100 * need:.0f}% wanted){kl_text}")


def _paired_line(topic: str, what: str, pd: Mapping[str, Any] | None, fmt: Any, unit: str, over: str, *,
                 lower_is_better: bool = False, fallback: float | None = None) -> VerdictLine | None:
    """One comparison with the control: green when the interval shows a gain, grey 'no gain shown' when it contains 0."""
    if pd is None or pd.get("mean") is None:
        if fallback is None:
            return None
        return VerdictLine("grey", topic, f"{what}: {fmt(fallback)}{unit}, with no paired test in this run: no gain shown")
    sign = _shown(pd) * (-1 if lower_is_better else 1)
    detail = f"{fmt(pd['mean'])}{unit} {_ci(pd, fmt, over)}"
    if sign > 0:
        return VerdictLine("green", topic, f"{what}: {detail}: a gain from distillation")
    if sign < 0:
        return VerdictLine("red", topic, f"{what}: {detail}: the label-only student does better")
    return VerdictLine("grey", topic, f"{what}: {detail}: no gain shown")


def _explanation_lines(block: Mapping[str, Any], over: str, models_key: str = "models", paired_key: str = "paired") -> list[VerdictLine]:
    """Per method: more agreement with the teacher's maps than the label-only student? Near zero? Gap closed?"""
    method = str(block.get("method", "?"))
    models = block.get(models_key) or {}
    s = _num(models, "student", "agreement", HEADLINE)
    if s is None:
        s = _num(block, "agreement", HEADLINE)
    if s is None:
        return []
    b = _num(models, "baseline", "agreement", HEADLINE)
    paired = block.get(paired_key) or {}
    lines: list[VerdictLine] = []
    if abs(s) < NEAR_ZERO:
        lines.append(VerdictLine("amber", method, f"the student's maps barely relate to the teacher's ({HEADLINE} {s:.2f}): "
                                                  "whatever the comparison below, this method shows no shared evidence"))
    pd = paired.get("student_minus_baseline", {}).get(HEADLINE)
    if pd is not None and pd.get("mean") is not None and b is not None:
        sign = _shown(pd)
        detail = f"{HEADLINE} {s:.2f} vs {b:.2f}, {pd['mean']:+.2f} {_ci(pd, lambda v: f'{v:+.2f}', over)}"
        if sign > 0:
            lines.append(VerdictLine("green", method, f"the student looks where the teacher looks more than the label-only "
                                                      f"student does: {detail}"))
        elif sign < 0:
            lines.append(VerdictLine("red", method, f"the label-only student looks where the teacher looks more than the "
                                                    f"distilled student does: {detail}"))
        else:
            lines.append(VerdictLine("grey", method, f"not shown that the student looks where the teacher looks more than "
                                                     f"the label-only student: {detail}"))
    else:
        lines.append(VerdictLine("grey", method, f"student vs teacher {HEADLINE} {s:.2f}; no label-only student was explained "
                                                 "to compare with, so nothing about distillation is shown"))
    pk = paired.get("student_minus_plain_kd", {}).get(HEADLINE)
    if pk is not None and pk.get("mean") is not None:
        status, words = _PLAIN_KD[_shown(pk)]
        lines.append(VerdictLine(status, method, f"{words}: {HEADLINE} {pk['mean']:+.2f} {_ci(pk, lambda v: f'{v:+.2f}', over)}"))
    scale = (block.get("scale") or {}).get(HEADLINE) or {}
    lines.extend(_scale_line(method, scale))
    return lines


def _scale_line(method: str, row: Mapping[str, Any]) -> list[VerdictLine]:
    ceiling, floor, b = row.get("ceiling"), row.get("floor"), row.get("baseline")
    if ceiling is None and floor is None:
        return []
    parts = []
    if ceiling is not None and b is not None:
        gap, scale = row.get("gap_closed"), f"label-only ({b:.2f}) and teacher-vs-teacher ({ceiling:.2f}) agreement"
        if gap is None:
            parts.append(f"the label-only student already agrees as much as two teachers do ({b:.2f} vs {ceiling:.2f})")
        elif gap < 0:
            parts.append(f"the distilled student ({row.get('student'):.2f}) sits below label-only on the scale between {scale}")
        else:
            parts.append(f"distillation closes {100 * gap:.0f}% of the gap between {scale}")
    elif ceiling is not None:
        parts.append(f"a second teacher agrees at {ceiling:.2f}")
    if floor is not None:
        parts.append(f"the untrained student scores {floor:.2f}")
    return [VerdictLine("grey", method, "; ".join(parts))]


# --------------------------------------------------------------------------- one run, many seeds


def verdict_lines(metrics: Mapping[str, Any], thresholds: Mapping[str, float] | None = None) -> list[VerdictLine]:
    """The verdict of one run, from metrics.json's content.

    Args:
        metrics: metrics.json (may be partial: lines whose numbers are missing are left out).
        thresholds: The config's ``report`` section (``max_accuracy_drop``, ``min_agreement``,
            ``margin``, fractions); default :data:`DEFAULT_THRESHOLDS`.

    Returns:
        The lines in order; a teacher no better than the majority class or a linear model first.

    Example:
        >>> [l.status for l in verdict_lines({"teacher": {"accuracy": 0.5}, "student": {"accuracy": 0.5},
        ...                                   "simple_models": {"majority": {"accuracy": 0.5}}})]
        ['red', 'green']
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    t, s, b = metrics.get("teacher") or {}, metrics.get("student") or {}, metrics.get("baseline") or {}
    t_acc, s_acc = _num(t, "accuracy"), _num(s, "accuracy")
    lines = _teacher_line(t_acc, _with_reference(metrics.get("simple_models"), metrics.get("reference")), th["margin"], None)
    if t_acc is None or s_acc is None:
        return lines
    lines.append(_accuracy_line(t_acc, s_acc, th["max_accuracy_drop"], th["margin"]))
    agree = _num(s, "agreement")
    if agree is not None:
        lines.append(_fidelity_line(agree, _num(s, "predictive_kl"), th["min_agreement"], th["margin"]))
    fid = (metrics.get("fidelity") or {}).get("student_minus_baseline") or {}
    over = "{n} test inputs"
    b_acc, b_agree = _num(b, "accuracy"), _num(b, "agreement")
    for key, what, fallback in (
        ("accuracy", "accuracy vs the label-only student", None if b_acc is None else s_acc - b_acc),
        ("agreement", "agreement with the teacher's predictions vs the label-only student",
         None if b_agree is None or agree is None else agree - b_agree),
    ):
        line = _paired_line("vs label-only", what, fid.get(key), _pts, " points", over, fallback=fallback)
        if line is not None:
            lines.append(line)
    for block in (metrics.get("explanations") or {}).get("methods") or []:
        lines.extend(_explanation_lines(block, "{n} test inputs"))
    return lines


def summary_verdict_lines(summary: Mapping[str, Any], thresholds: Mapping[str, float] | None = None) -> list[VerdictLine]:
    """The verdict of several seeds, from summary.json (:mod:`distilens.seeds`): means over seeds, paired per seed.

    Example:
        >>> lines = summary_verdict_lines(json.loads(Path("runs/x/summary.json").read_text()))
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    models = summary.get("models") or {}
    n = len(summary.get("seeds") or [])
    t_acc, s_acc = _num(models, "teacher", "accuracy", "mean"), _num(models, "student", "accuracy", "mean")
    simple = summary.get("simple_models") or {}
    simple_means = {k: {"accuracy": _num(v, "accuracy", "mean"), "model": v.get("model")} for k, v in simple.items()}
    lines = _teacher_line(t_acc, {k: v for k, v in simple_means.items() if v["accuracy"] is not None}, th["margin"], n)
    if t_acc is None or s_acc is None:
        return lines
    seeds = f" (mean of {n} seeds)"
    lines.append(_accuracy_line(t_acc, s_acc, th["max_accuracy_drop"], th["margin"], seeds))
    agree = _num(models, "student", "agreement", "mean")
    if agree is not None:
        lines.append(_fidelity_line(agree, _num(models, "student", "predictive_kl", "mean"), th["min_agreement"], th["margin"], seeds))
    paired = (summary.get("paired") or {}).get("student_minus_baseline") or {}
    over = "{n} seeds"
    for key, what in (("accuracy", "accuracy vs the label-only student"),
                      ("agreement", "agreement with the teacher's predictions vs the label-only student")):
        line = _paired_line("vs label-only", what, paired.get(key), _pts, " points", over)
        if line is not None:
            lines.append(line)
    for method, block in (summary.get("explanations") or {}).items():
        lines.extend(_explanation_lines({"method": method, **block}, over))
    return lines


def print_verdict(console: Any, metrics: Mapping[str, Any], thresholds: Mapping[str, float] | None = None,
                  lines: Sequence[VerdictLine] | None = None) -> None:
    """Print the verdict on a rich ``Console``, one coloured line each (the report's first lines).

    Args:
        console: A ``rich.console.Console``.
        metrics: metrics.json's content.
        thresholds: The config's ``report`` section.
        lines: Lines already made (e.g. :func:`summary_verdict_lines`); default those of ``metrics``.
    """
    from rich.markup import escape

    for line in verdict_lines(metrics, thresholds) if lines is None else lines:
        console.print(f"[{_STYLE[line.status]}]{escape(line.console())}[/]", soft_wrap=True)
