"""The TF-IDF + logistic regression reference: C chosen on validation, test scored once, bad input refused."""

from __future__ import annotations

import pytest

from distilens.errors import DataError
from distilens.reference import tfidf_logreg

GOOD = ["a good film", "good and fun", "a fine good story", "fun , fine work", "really good fun"]
BAD = ["a bad film", "bad and dull", "a poor bad story", "dull , poor work", "really bad dull"]


def _split(i: int) -> tuple[list[str], list[int]]:
    texts = [GOOD[j] + f" number {i}" for j in range(5)] + [BAD[j] + f" number {i}" for j in range(5)]
    return texts, [1] * 5 + [0] * 5


def test_separable_texts_are_classified_and_c_is_chosen_on_validation() -> None:
    (tr, ytr), (va, yva), (te, yte) = _split(0), _split(1), _split(2)
    ref = tfidf_logreg(tr * 3, ytr * 3, va, yva, te, yte, cs=[0.01, 100.0])
    assert ref["name"] == "tfidf_logreg" and ref["test_accuracy"] == 1.0 and ref["val_accuracy"] == 1.0
    assert [row["C"] for row in ref["path"]] == [0.01, 100.0]
    assert ref["C"] == min(row["C"] for row in ref["path"] if row["val_accuracy"] == ref["val_accuracy"])  # ties: smaller C
    assert ref["features"] > 10  # uni- and bigrams
    again = tfidf_logreg(tr * 3, ytr * 3, va, yva, te, yte, cs=[0.01, 100.0])
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in ref.items() if k != "seconds"}


def test_refuses_empty_splits_and_bad_grid() -> None:
    (tr, ytr), (va, yva) = _split(0), _split(1)
    with pytest.raises(DataError, match="TF-IDF"):
        tfidf_logreg(tr, ytr, va, yva, [], [])
    with pytest.raises(ValueError, match="cs"):
        tfidf_logreg(tr, ytr, va, yva, va, yva, cs=[0.0])
