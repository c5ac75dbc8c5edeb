"""A layer-truncated teacher as the student (student.init: teacher_layers, DistilBERT-style)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distilens.config import load_config
from distilens.errors import ConfigError
from distilens.models import build_model
from distilens.models.layer_init import check_layer_init, init_layers_from_teacher, kept_layers
from distilens.models.text import REFERENCE_TEXT_SPEC
from e2e import invoke, write_reviews

SPEC = REFERENCE_TEXT_SPEC


def _transformer(layers: int, seed: int, dim: int = 16):
    torch.manual_seed(seed)
    return build_model("tiny_transformer", SPEC, dim=dim, layers=layers, heads=2).eval()


def test_kept_layers_take_one_in_two_from_the_bottom() -> None:
    assert kept_layers(6, 3) == [0, 2, 4]  # DistilBERT: 12 → 6 takes every other layer
    assert kept_layers(6, 2) == [0, 3] and kept_layers(6, 1) == [0] and kept_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="the student has 5 layers and the teacher 4"):
        kept_layers(4, 5)


def test_the_student_starts_from_the_teachers_layers() -> None:
    teacher, student = _transformer(4, seed=0), _transformer(2, seed=1)
    info = init_layers_from_teacher(student, teacher)
    assert info["layers"] == {"blocks": [0, 2]} and info["source"] == "teacher_layers"
    assert info["tensors"] == len(list(student.parameters())) + len(list(student.buffers()))
    for k, t in zip(range(2), (0, 2)):
        for (name, mine), theirs in zip(student.blocks[k].named_parameters(), teacher.blocks[t].parameters()):
            assert torch.equal(mine, theirs), name
    t_params = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        if not name.startswith("blocks."):
            assert torch.equal(p, t_params[name]), name  # embeddings, positions, norm, head

    # Keeping every layer reproduces the teacher exactly: nothing else differs.
    full = _transformer(4, seed=2)
    init_layers_from_teacher(full, teacher)
    ids = torch.randint(1, SPEC.vocab_size, (3, 9))
    with torch.no_grad():
        assert torch.equal(full(ids), teacher(ids))


def test_a_student_of_another_shape_is_refused_before_training() -> None:
    teacher = _transformer(2, seed=0)
    shapes = r"the teacher's 'embedding.weight' has shape \(20000, 16\), not \(20000, 8\); the student must be"
    with pytest.raises(ConfigError, match=shapes):
        check_layer_init(_transformer(1, seed=0, dim=8), teacher)
    with pytest.raises(ConfigError, match="the student has 3 layers and the teacher 2"):
        check_layer_init(_transformer(3, seed=0), teacher)
    with pytest.raises(ConfigError, match="student.arch must be teacher.arch"):
        load_config(None, ["data.source=csv:x.csv", "data.text=t", "teacher.arch=tiny_transformer",
                           "student.arch=text_cnn", "student.init=teacher_layers"])


def test_run_with_a_layer_truncated_teacher_as_student(tmp_path: Path) -> None:
    write_reviews(tmp_path / "reviews.csv", n=120)
    model = "arch: tiny_transformer, args: {dim: 16, heads: 2, layers: %d}"
    (tmp_path / "t.yaml").write_text(
        "data: {source: csv:reviews.csv, text: review, target: label, max_length: 16}\n"
        f"teacher: {{{model % 2}, train: {{epochs: 2, batch_size: 16}}}}\n"
        f"student: {{{model % 1}, init: teacher_layers}}\n"
        "distill: {epochs: 1, batch_size: 16, baseline: true}\nexplain: {methods: []}\nruntime: {threads: 1}\n"
    )
    r = invoke("run", "t.yaml", "--quiet", "--out", "run", cwd=tmp_path)
    assert r.code == 0, r.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["student_init"]["source"] == "teacher_layers" and m["student_init"]["layers"] == {"blocks": [0]}
    assert m["student"]["params"] < m["teacher"]["params"]
