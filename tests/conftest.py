"""Shared fixtures: the seed, the digits data, and the ``distilens`` command end to end
(``cli``, ``finished_runs``, ``tiny_run``; their machinery is in e2e.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from distilens.data import DataBundle, load_dataset
from distilens.models import build_model
from e2e import FinishedRun, FinishedRuns, Result, invoke


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return load_dataset("builtin:digits", seed=0)


@pytest.fixture
def cnn_pair(digits: DataBundle) -> tuple[torch.nn.Module, torch.nn.Module]:
    """An untrained teacher (width 8) and student (width 4) in eval mode."""
    torch.manual_seed(1)
    teacher = build_model("cnn", digits.spec, width=8).eval()
    student = build_model("cnn", digits.spec, width=4).eval()
    return teacher, student


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """``cli(*args, cwd=tmp_path)``: the ``distilens`` command in this process (see ``invoke``)."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        return invoke(*args, cwd=cwd or tmp_path)

    return run


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> FinishedRuns:
    return FinishedRuns(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_run(finished_runs: FinishedRuns) -> FinishedRun:
    """The tiny digits run (``TINY``), shared by the tests of the commands that read a run folder."""
    return finished_runs.get("digits")
