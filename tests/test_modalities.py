"""The modality registry: every kind of data has one plug-in, and a new kind plugs in without other edits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distilens.config import DataConfig
from distilens.data import InputSpec, load_dataset
from distilens.errors import DistilensError
from distilens.evaluate import cost_metrics
from distilens.export import export_model
from distilens.modalities import BUILTIN_KINDS, MODALITIES, Modality, all_modalities, example_inputs, modality_for, modality_of
from distilens.models import check_teacher

IMAGE = InputSpec("image", (1, 8, 8), ("a", "b"), mean=(0.0,), std=(1.0,))
TABLE = InputSpec("table", (5,), ("a", "b"), feature_names=tuple("vwxyz"))
TEXT = InputSpec("text", (7,), ("neg", "pos"), vocab_size=50, pad_id=0)


def test_every_kind_of_data_has_a_registered_modality() -> None:
    kinds = [m.kind for m in all_modalities()]
    assert set(BUILTIN_KINDS) <= set(kinds) and kinds == MODALITIES.names()
    for kind in BUILTIN_KINDS:
        assert modality_of(kind).kind == kind and modality_of(kind) is MODALITIES.get(kind)
    assert {modality_of(k).align for k in BUILTIN_KINDS} == {"pixels", "features", "words"}
    for source in ("builtin:digits", "builtin:wine"):  # what the loaders produce is a registered kind
        spec = load_dataset(source).spec
        assert modality_of(spec).kind == spec.kind


def test_an_unknown_kind_fails_with_the_known_ones() -> None:
    with pytest.raises(DistilensError, match="unknown modality 'audio'.*image, table, text"):
        modality_of("audio")


def test_the_modality_of_a_config_is_known_before_reading_where_the_source_says() -> None:
    assert modality_for(DataConfig(source="csv:x.csv", text="review", target="y")).kind == "text"
    assert modality_for(DataConfig(source="csv:x.csv", target="y")).kind == "table"
    assert modality_for(DataConfig(source="imagefolder:photos")).kind == "image"
    assert modality_for(DataConfig(source="builtin:digits")) is None  # known once the set is read


def test_one_example_input_builder_for_every_kind() -> None:
    assert torch.equal(example_inputs(IMAGE, 2), torch.zeros(2, 1, 8, 8))
    assert torch.equal(example_inputs(TABLE, 3), torch.zeros(3, 5))
    ids = example_inputs(TEXT, 2)
    assert ids.dtype == torch.long and ids.shape == (2, 7) and bool((ids != TEXT.pad_id).all())
    drawn = example_inputs(TEXT, 8, generator=torch.Generator().manual_seed(0))
    assert drawn.dtype == torch.long and int(drawn.max()) < TEXT.vocab_size
    a, b = (example_inputs(IMAGE, 4, generator=torch.Generator().manual_seed(0)) for _ in range(2))
    assert torch.equal(a, b) and a.std() > 0  # seeded draws


class _Waves(Modality):
    """A made-up kind: 1-D signals of 16 samples."""

    kind = "waves"
    align = "features"

    def claims(self, data: DataConfig) -> bool:
        return data.source.startswith("waves:")

    def example_inputs(self, spec, batch=1, *, device="cpu", generator=None):  # noqa: ANN001, ANN201
        return torch.ones((batch, *spec.shape), device=device)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_a_new_kind_plugs_in_by_registering_one_class(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(MODALITIES._items, "waves", _Waves())
    spec = InputSpec("waves", (1, 16), ("low", "high"))  # type: ignore[arg-type]
    assert isinstance(modality_of(spec), _Waves)
    assert modality_for(DataConfig(source="waves:signals")).kind == "waves"
    model = _Net()
    # models, evaluation and export ask the modality for example inputs: nothing else to edit
    assert check_teacher(model, spec) is model
    cost = cost_metrics(model, spec, latency=False)
    assert cost["params"] == 34 and cost["flops"] > 0
    info = export_model(model, spec, tmp_path / "m.pt", "torchscript")
    assert info["max_abs_diff"] < 1e-5


def test_registering_a_kind_twice_is_a_bug() -> None:
    with pytest.raises(ValueError, match="already registered"):
        MODALITIES.register("image")(_Waves())
