"""Property-based tests: any input to the config loader, the --set parser and the CSV loader ends
in success or a DistilensError, never another exception."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilens.config import load_config
from distilens.data.table import load_csv
from distilens.errors import DistilensError

KEYS = ["name", "seed", "data.source", "data.val_fraction", "teacher.arch", "teacher.args.width", "distill.epochs",
        "distill.losses[0].temperature", "distill.losses[1].weight", "explain.methods", "runtime.device", "report.margin"]
scalars = st.one_of(st.integers(-5, 500), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.text(string.printable, max_size=12))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
# derandomize: CI sees the same examples as the developer (a failure is a bug to fix, not a flake).
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except DistilensError as exc:
            assert "\n" not in str(exc)


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_as_a_config_file(text: str) -> None:
    _load_text(text)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["name", "seed", "data", "teacher", "distill", "explain", "runtime", "report", "x"]),
                       yaml_values, max_size=4))
def test_any_mapping_as_a_config(raw: dict) -> None:
    import yaml

    _load_text(yaml.safe_dump(raw))


@SETTINGS
@given(st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(string.printable, max_size=10)),
                          st.text(string.printable, max_size=20)), max_size=4))
def test_any_set_overrides(overrides: list[str]) -> None:
    try:
        load_config(None, overrides)
    except DistilensError as exc:
        assert "\n" not in str(exc)


cells = st.one_of(st.integers(-3, 3).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", "NA", "a", "b", "é", "1e3", "x,y", '"q"']))


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.lists(st.lists(cells, min_size=1, max_size=5), max_size=25), st.booleans())
def test_any_csv_table(n_columns: int, rows: list[list[str]], ragged: bool) -> None:
    header = ",".join(["target"] + [f"c{i}" for i in range(n_columns)])
    lines = [header] + [",".join(r if ragged else (r + [""] * n_columns)[: n_columns + 1]) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            load_csv(path, target="target", seed=0, val_fraction=0.1, test_fraction=0.2)
        except DistilensError as exc:
            assert "\n" not in str(exc)
