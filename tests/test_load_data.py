"""load_data takes the typed data config; load_dataset is the same call with keywords."""

from __future__ import annotations

import pytest
import torch

from distilens.config import DataConfig, load_config
from distilens.data import load_data, load_dataset
from distilens.errors import ConfigError, DataError, DistilensError


def test_keywords_and_config_give_the_same_bundle() -> None:
    a = load_dataset("builtin:wine", seed=3, val_fraction=0.2, test_fraction=0.3)
    b = load_data(DataConfig(source="builtin:wine", val_fraction=0.2, test_fraction=0.3), seed=3)
    c = load_data(load_config(None, ["data.source=wine", "data.val_fraction=0.2", "data.test_fraction=0.3"]).data, seed=3)
    for split in ("train", "val", "test"):
        assert all(torch.equal(getattr(x, split).inputs, getattr(a, split).inputs) for x in (b, c))
    assert a.spec == b.spec == c.spec and a.preprocessing.to_dict() == b.preprocessing.to_dict()


def test_options_are_checked_like_the_config() -> None:
    with pytest.raises(ConfigError, match=r"load_dataset: data\.val_fractoin: Extra inputs are not permitted"):
        load_dataset("builtin:wine", val_fractoin=0.2)
    with pytest.raises(ConfigError, match=r"val_fraction \+ test_fraction must be below 0.9"):
        load_dataset("builtin:wine", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="unknown source kind 'http'; use builtin:NAME, imagefolder:PATH or csv:PATH"):
        load_dataset("http://example.org/data.csv")
    with pytest.raises(DistilensError, match=r"unknown dataset 'wines' \(did you mean 'wine'\?\)"):
        load_dataset("wines")
