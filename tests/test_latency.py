"""Latency is measured interleaved with its spread, and a speed-up is claimed only outside the noise."""

from __future__ import annotations

import torch

from distilens.data import load_dataset
from distilens.evaluate import latency_speedup, measure_latencies, measure_latency
from distilens.models import build_model
from distilens.pipeline.evaluate import compression


def test_measure_latencies_interleaves_and_reports_the_spread() -> None:
    spec = load_dataset("builtin:digits").spec
    torch.manual_seed(0)
    teacher, student = build_model("cnn", spec, width=8), build_model("cnn", spec, width=4)
    teacher.train()
    lat = measure_latencies({"teacher": (teacher, spec), "student": (student, spec)}, (1, 4), rounds=8, warmup=1)
    assert teacher.training and student.training  # modes restored
    for role in ("teacher", "student"):
        block = lat["models"][role]
        assert set(block["latency_ms"]) == set(block["latency_iqr_ms"]) == {"batch1", "batch4"}
        for key, (q1, q3) in block["latency_iqr_ms"].items():
            assert 0 < q1 <= block["latency_ms"][key] <= q3
    env = lat["environment"]
    assert env["threads"] == torch.get_num_threads() and env["rounds"] == {"batch1": 8, "batch4": 8}
    assert env["order"] == "interleaved: teacher student"
    assert env["load_average"] is None or len(env["load_average"]) == 3
    assert set(measure_latency(student, spec, repeats=3, warmup=0)) == {"batch1", "batch64"}


def _block(median: float, q1: float, q3: float) -> dict:
    return {"latency_ms": {"batch1": median}, "latency_iqr_ms": {"batch1": [q1, q3]}}


def test_speedup_only_when_the_ranges_do_not_overlap() -> None:
    assert latency_speedup(_block(4.0, 3.5, 4.5), _block(1.0, 0.9, 1.1), "batch1") == 4.0
    assert latency_speedup(_block(4.0, 1.0, 9.0), _block(1.0, 0.9, 1.1), "batch1") is None  # noisy machine
    assert latency_speedup({"latency_ms": {"batch1": 2.0}}, {"latency_ms": {"batch1": 1.0}}, "batch1") == 2.0  # old files
    models = {
        "teacher": {"params": 10, "flops": 10, **_block(4.0, 1.0, 9.0)},
        "student": {"params": 5, "flops": 5, **_block(1.0, 0.9, 1.1)},
    }
    for m in models.values():
        m["latency_ms"]["batch64"], m["latency_iqr_ms"]["batch64"] = m["latency_ms"]["batch1"], m["latency_iqr_ms"]["batch1"]
    c = compression(models)
    assert c["speedup_batch1"] is None and c["speedup_batch64"] is None and c["params_ratio"] == 2.0

