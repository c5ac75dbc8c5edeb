from __future__ import annotations

import pytest
import torch

from distilens.data import DataBundle, load_dataset
from distilens.models import build_model


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
