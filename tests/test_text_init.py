"""Student word tables from the teacher's input embeddings: PCA by hand, piece means, the two cases, in place."""

from __future__ import annotations

import pytest
import torch

from distilens.data.bundle import InputSpec
from distilens.data.tokenize import TextTokenizer
from distilens.errors import ConfigError
from distilens.models import build_model
from distilens.models.text_init import (
    check_teacher_init, fit_pca, init_embeddings_from_teacher, teacher_embedding_table, word_piece_means,
)
from distilens.testing.text import wordpiece

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "film", "good", "un", "##fun", "##ny", "fun", "bad"]


def _teacher_tokenizer() -> TextTokenizer:
    return TextTokenizer(wordpiece(PIECES))


def _teacher_table(dim: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(len(PIECES), dim, generator=g)


def test_pca_on_a_hand_made_table() -> None:
    # Points on a plane spanned by u (spread 3) and v (spread 1) in R^4, shifted by m.
    u = torch.tensor([1.0, 1.0, 0.0, 0.0]) / 2**0.5
    v = torch.tensor([0.0, 0.0, -1.0, 0.0])
    m = torch.tensor([5.0, -2.0, 1.0, 7.0])
    a = torch.tensor([-3.0, 3.0, -3.0, 3.0])
    b = torch.tensor([1.0, 1.0, -1.0, -1.0])
    x = m + a[:, None] * u + b[:, None] * v
    pca = fit_pca(x, 1)
    # The first component is u (its largest entry made positive), the scores are a.
    assert torch.allclose(pca.components[:, 0].float(), u, atol=1e-6)
    assert torch.allclose(pca(x).squeeze(1).float(), a, atol=1e-5)
    assert pca.explained_variance.tolist() == pytest.approx([12.0])  # var(a) with n - 1 = 3
    assert pca.explained_ratio == pytest.approx(12.0 / (12.0 + 4.0 / 3.0))
    two = fit_pca(x, 2)
    # v's largest-magnitude entry is -1: the sign rule flips it, so the second scores are -b.
    assert torch.allclose(two(x)[:, 1].float(), -b, atol=1e-5) and two.explained_ratio == pytest.approx(1.0)
    wide = fit_pca(x, 6)  # wider than the data: every component, then zero columns
    assert wide(x).shape == (4, 6) and torch.all(wide(x)[:, 4:] == 0)
    with pytest.raises(ValueError, match="fit_pca"):
        fit_pca(x[:1], 1)


def test_piece_means_one_piece_is_its_row_many_pieces_their_mean() -> None:
    tok, table = _teacher_tokenizer(), _teacher_table()
    means = word_piece_means(["film", "unfunny", "zzz", "FUN"], tok, table)
    assert torch.equal(means[0], table[PIECES.index("film")])
    expected = table[[PIECES.index(p) for p in ("un", "##fun", "##ny")]].mean(0)
    assert torch.allclose(means[1], expected)
    assert torch.equal(means[2], table[PIECES.index("[UNK]")])  # unknown to the teacher: its [UNK] row
    assert torch.equal(means[3], table[PIECES.index("fun")])  # the teacher lower-cases


def test_word_level_table_projects_piece_means_deterministically() -> None:
    teacher_tok, table = _teacher_tokenizer(), _teacher_table()
    student_tok = TextTokenizer.word_level(["a good film", "an unfunny bad film", "fun fun film"])
    out, pca, source = teacher_embedding_table(student_tok, teacher_tok, table, 3)
    assert source == "piece_means" and out.shape == (student_tok.vocab_size, 3) and out.dtype == torch.float32
    assert torch.all(out[student_tok.pad_id] == 0)
    # A word made of one piece gets exactly that piece's projected row.
    film = student_tok.token_to_id("film")
    assert torch.allclose(out[film], pca(table[PIECES.index("film")][None]).squeeze(0).float(), atol=1e-6)
    # The PCA was fitted on the student's vocabulary (pad left out): its rows are centred.
    keep = torch.arange(student_tok.vocab_size) != student_tok.pad_id
    assert torch.allclose(out[keep].mean(0), torch.zeros(3), atol=1e-5)
    again, _, _ = teacher_embedding_table(student_tok, teacher_tok, table, 3)
    assert torch.equal(out, again)
    scaled, pca_scaled, _ = teacher_embedding_table(student_tok, teacher_tok, table, 3, std=0.5)
    assert float(scaled[keep].std()) == pytest.approx(0.5, rel=1e-5)
    assert torch.allclose(scaled[film], pca_scaled(table[PIECES.index("film")][None]).squeeze(0).float(), atol=1e-6)
    assert torch.allclose(scaled[keep], out[keep] * (0.5 / out[keep].std()), atol=1e-6)  # same geometry


def test_teacher_tokenised_student_gets_the_teacher_rows() -> None:
    tok, table = _teacher_tokenizer(), _teacher_table()
    same, pca, source = teacher_embedding_table(tok, tok, table, 6)
    assert source == "teacher_rows" and pca is None
    assert torch.equal(same[1:], table[1:]) and torch.all(same[0] == 0)  # [PAD] (id 0) zeroed
    narrow, pca, _ = teacher_embedding_table(tok, tok, table, 2)
    assert narrow.shape == (len(PIECES), 2) and pca is not None
    assert torch.allclose(narrow[4], pca(table[4:5]).squeeze(0).float(), atol=1e-6)


def test_init_in_place_keeps_the_students_scale_and_refuses_non_text_models() -> None:
    teacher_tok = _teacher_tokenizer()
    student_tok = TextTokenizer.word_level(["a good film", "an unfunny bad film"])
    t_spec = InputSpec("text", (8,), ("neg", "pos"), vocab_size=teacher_tok.vocab_size, pad_id=teacher_tok.pad_id)
    s_spec = InputSpec("text", (8,), ("neg", "pos"), vocab_size=student_tok.vocab_size, pad_id=student_tok.pad_id)
    torch.manual_seed(0)
    teacher = build_model("tiny_transformer", t_spec, dim=8, layers=1, heads=2)
    for arch in ("embedding_bag", "text_cnn", "bilstm"):
        student = build_model(arch, s_spec, dim=4)
        weight = student.get_input_embeddings().weight
        keep = torch.arange(weight.shape[0]) != student_tok.pad_id
        std = float(weight.detach()[keep].std())
        info = init_embeddings_from_teacher(student, teacher, student_tok, teacher_tok)
        expected, _, _ = teacher_embedding_table(student_tok, teacher_tok, teacher.get_input_embeddings().weight, 4,
                                                 std=std)
        assert torch.allclose(weight, expected, atol=1e-6) and torch.all(weight[student_tok.pad_id] == 0)
        assert info["source"] == "piece_means" and info["dim"] == 4 and info["std"] == pytest.approx(std, rel=1e-5)
        assert 0 < info["explained_variance"] <= 1
    image = InputSpec("image", (1, 4, 4), ("a", "b"))
    with pytest.raises(ConfigError, match="student.init"):
        init_embeddings_from_teacher(build_model("mlp", image), teacher, student_tok, teacher_tok)
    with pytest.raises(ConfigError, match="student.init"):  # the same check, before any training
        check_teacher_init(student, build_model("mlp", image))
