"""Every config in examples/ is a valid run config (the keys exist, the values pass validation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distilens.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    if cfg.data.text is not None:  # a text recipe is meant for the user's own CSV
        cfg = load_config(path, overrides=["data.source=csv:my.csv", "data.text=review"])
        assert cfg.name == path.stem and cfg.data.text == "review"


def test_there_are_examples() -> None:
    assert EXAMPLES
