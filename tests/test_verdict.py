"""The verdict's wording rules, on hand-made metrics (report/verdict.py is pure: metrics in, lines out)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from distilens.report.build import verdict
from distilens.report.verdict import NEAR_ZERO, print_verdict, summary_verdict_lines, verdict_lines


def _pd(mean: float, lo: float, hi: float, n: int = 128, p: float = 0.5, **extra) -> dict:
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "n": n, "n_nan": 0, "wins": 1, "ties": 0,
            "losses": 1, "level": 0.95, **extra}


def _metrics(**over) -> dict:
    m = {
        "teacher": {"accuracy": 0.99},
        "student": {"accuracy": 0.985, "agreement": 0.98, "predictive_kl": 0.03},
        "baseline": {"accuracy": 0.98, "agreement": 0.97, "predictive_kl": 0.09},
        "simple_models": {"majority": {"accuracy": 0.10}, "linear": {"accuracy": 0.93, "model": "ridge classifier on pixels"}},
        "fidelity": {"student_minus_baseline": {"accuracy": _pd(0.005, -0.01, 0.02), "agreement": _pd(0.01, 0.002, 0.02)}},
        "explanations": {"methods": [{
            "method": "gradcam", "agreement": {"spearman": 0.6},
            "models": {"student": {"agreement": {"spearman": 0.6}}, "baseline": {"agreement": {"spearman": 0.5}}},
            "paired": {"student_minus_baseline": {"spearman": _pd(0.1, 0.05, 0.15, p=0.001)}},
        }]},
    }
    m.update(over)
    return m


def _by_topic(lines, topic):
    return [l for l in lines if l.topic == topic]


def test_a_good_run_reads_green_where_shown() -> None:
    lines = verdict_lines(_metrics())
    assert [l.topic for l in lines][:3] == ["teacher", "accuracy", "predictions"]
    assert all(l.status == "green" for l in lines[:3])
    acc, agree = _by_topic(lines, "vs label-only")
    assert acc.status == "grey" and "no gain shown" in acc.text  # CI −1.0 to +2.0 points crosses 0
    assert agree.status == "green" and "+1.0 points" in agree.text and "95% CI +0.2 to +2.0" in agree.text
    (g,) = _by_topic(lines, "gradcam")
    assert g.status == "green" and "more than the label-only student" in g.text and "0.60 vs 0.50" in g.text


def test_teacher_no_better_than_the_majority_class_is_red_and_first() -> None:
    m = _metrics(teacher={"accuracy": 0.10}, student={"accuracy": 0.10, "agreement": 1.0})
    lines = verdict_lines(m)
    assert lines[0].status == "red" and lines[0].topic == "teacher" and "majority class" in lines[0].text
    assert lines[0].console().startswith("✗ teacher: ")


def test_teacher_no_better_than_a_linear_model_is_red_and_first() -> None:
    lines = verdict_lines(_metrics(teacher={"accuracy": 0.92}))
    assert lines[0].status == "red" and "linear model" in lines[0].text and "ridge classifier on pixels: 93.0%" in lines[0].text
    lines = verdict_lines(_metrics(teacher={"accuracy": 0.935}))  # above, by less than the margin
    assert lines[0].status == "amber" and "barely above" in lines[0].text


def test_a_text_runs_tfidf_reference_is_the_linear_model_when_it_is_stronger() -> None:
    reference = {"name": "tfidf_logreg", "test_accuracy": 0.95}
    lines = verdict_lines(_metrics(reference=reference))  # TF-IDF 95.0% > ridge 93.0% and the teacher's 99%: still green
    assert lines[0].status == "green" and "TF-IDF + logistic regression: 95.0%" in lines[0].text
    lines = verdict_lines(_metrics(teacher={"accuracy": 0.94}, reference=reference))  # above ridge, below TF-IDF
    assert lines[0].status == "red" and "TF-IDF + logistic regression: 95.0%" in lines[0].text
    lines = verdict_lines(_metrics(reference={"test_accuracy": 0.5}))  # weaker: the ridge classifier stays
    assert "ridge classifier on pixels" in lines[0].text


def test_zero_gain_is_never_green() -> None:
    fid = {"student_minus_baseline": {"accuracy": _pd(0.0, 0.0, 0.0, p=1.0), "agreement": _pd(0.0, -0.004, 0.004, p=1.0)}}
    lines = _by_topic(verdict_lines(_metrics(fidelity=fid)), "vs label-only")
    assert [l.status for l in lines] == ["grey", "grey"]
    assert all("no gain shown" in l.text for l in lines) and "+0.0 points" in lines[0].text
    # without a paired test the equal means are "no gain shown" too
    lines = _by_topic(verdict_lines(_metrics(fidelity={}, student={"accuracy": 0.98, "agreement": 0.97})), "vs label-only")
    assert lines[0].status == "grey" and "+0.0 points" in lines[0].text and "no gain shown" in lines[0].text


def test_an_interval_across_zero_is_not_shown_and_one_below_is_red() -> None:
    m = _metrics()
    block = m["explanations"]["methods"][0]
    block["paired"]["student_minus_baseline"]["spearman"] = _pd(0.02, -0.01, 0.05)
    (g,) = _by_topic(verdict_lines(m), "gradcam")
    assert g.status == "grey" and g.text.startswith("not shown")
    block["paired"]["student_minus_baseline"]["spearman"] = _pd(-0.1, -0.15, -0.05)
    (g,) = _by_topic(verdict_lines(m), "gradcam")
    assert g.status == "red" and "label-only student looks where the teacher looks more" in g.text


def test_agreement_near_zero_is_flagged() -> None:
    m = _metrics()
    ig = {"method": "integrated_gradients", "agreement": {"spearman": 0.03},
          "models": {"student": {"agreement": {"spearman": 0.03}}, "baseline": {"agreement": {"spearman": 0.01}}},
          "paired": {"student_minus_baseline": {"spearman": _pd(0.02, 0.01, 0.03)}}}
    m["explanations"]["methods"].append(ig)
    lines = _by_topic(verdict_lines(m), "integrated_gradients")
    assert lines[0].status == "amber" and "barely relate" in lines[0].text and "0.03" in lines[0].text
    assert 0.03 < NEAR_ZERO


def test_without_a_baseline_nothing_about_distillation_is_shown() -> None:
    m = _metrics()
    del m["baseline"], m["fidelity"]
    m["explanations"]["methods"][0] = {"method": "gradcam", "agreement": {"spearman": 0.6}}
    lines = verdict_lines(m)
    assert not _by_topic(lines, "vs label-only")
    (g,) = _by_topic(lines, "gradcam")
    assert g.status == "grey" and "nothing about distillation is shown" in g.text


def test_scale_and_plain_kd_lines() -> None:
    m = _metrics()
    block = m["explanations"]["methods"][0]
    block["scale"] = {"spearman": {"floor": 0.1, "ceiling": 0.7, "student": 0.6, "baseline": 0.5, "gap_closed": 0.5}}
    block["paired"]["student_minus_plain_kd"] = {"spearman": _pd(0.0, -0.02, 0.02)}
    texts = [l.text for l in _by_topic(verdict_lines(m), "gradcam")]
    assert any("closes 50% of the gap between label-only (0.50) and teacher-vs-teacher (0.70)" in t for t in texts)
    assert any("untrained student scores 0.10" in t for t in texts)
    assert any(t.startswith("not shown that the explanation loss adds agreement beyond plain KD") for t in texts)


def test_over_seeds_the_t_interval_decides() -> None:
    pd = _pd(0.004, 0.001, 0.007, n=5, p=0.0625, t_ci_low=-0.003, t_ci_high=0.011)  # bootstrap excludes 0, t does not
    summary = {
        "seeds": [0, 1, 2, 3, 4],
        "models": {"teacher": {"accuracy": {"mean": 0.99}}, "student": {"accuracy": {"mean": 0.985}, "agreement": {"mean": 0.98}}},
        "simple_models": {"majority": {"accuracy": {"mean": 0.1}}},
        "paired": {"student_minus_baseline": {"accuracy": pd}},
        "explanations": {"gradcam": {"models": {"student": {"agreement": {"spearman": 0.6}}, "baseline": {"agreement": {"spearman": 0.55}}},
                                     "paired": {"student_minus_baseline": {"spearman": _pd(0.05, 0.03, 0.07, n=5, t_ci_low=0.01, t_ci_high=0.09)}}}},
    }
    lines = summary_verdict_lines(summary)
    assert "mean of 5 seeds" in lines[0].text
    (acc,) = _by_topic(lines, "vs label-only")
    assert acc.status == "grey" and "95% t-interval -0.3 to +1.1" in acc.text and "5 seeds" in acc.text
    (g,) = _by_topic(lines, "gradcam")
    assert g.status == "green" and "wins/ties/losses" in g.text


def test_console_and_report_say_the_same_lines() -> None:
    m = _metrics()
    buf = io.StringIO()
    print_verdict(Console(file=buf, width=300, color_system=None), m)
    printed = buf.getvalue().splitlines()
    rows = verdict(m, {"max_accuracy_drop": 0.01, "min_agreement": 0.95, "margin": 0.01})
    assert printed == [l.console() for l in verdict_lines(m)]
    assert [r["value"] for r in rows] == [l.text for l in verdict_lines(m)]


@pytest.mark.parametrize("metrics", [{}, {"teacher": {"accuracy": 0.9}}, {"student": {"accuracy": 0.9}}])
def test_partial_metrics_give_what_they_can(metrics) -> None:
    assert isinstance(verdict_lines(metrics), list)
