"""Cheap, honest reference baselines that a distillation result should be read against.

A text student that distils a transformer into 50× fewer parameters is only worth its
training if it beats what a few seconds of classical machine learning give on the same
split: TF-IDF over word uni- and bigrams and a logistic regression (round 2 of the text
benchmark: 77.5% on Rotten Tomatoes, above every distilled student then).

Example:
    >>> ref = tfidf_logreg(train_texts, train_y, val_texts, val_y, test_texts, test_y)
    >>> ref["test_accuracy"], ref["C"]
    (0.775, 10.0)
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from torch import Tensor

from .errors import DataError

__all__ = ["tfidf_logreg", "DEFAULT_CS"]

#: Inverse regularisation strengths tried; the best validation accuracy wins (ties: the smaller C).
DEFAULT_CS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _labels(y: Sequence[int] | Tensor | np.ndarray) -> np.ndarray:
    return y.cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)


def tfidf_logreg(
    train_texts: Sequence[str], train_y: Sequence[int] | Tensor, val_texts: Sequence[str], val_y: Sequence[int] | Tensor,
    test_texts: Sequence[str], test_y: Sequence[int] | Tensor, *, cs: Sequence[float] = DEFAULT_CS,
    ngram_range: tuple[int, int] = (1, 2), min_df: int = 1, seed: int = 0,
) -> dict[str, Any]:
    """TF-IDF (word 1–2 grams, sublinear tf) + logistic regression, C chosen on the validation split.

    The vectoriser is fitted on the training texts only (lower-cased, words of
    :data:`distilens.data.tokenize.WORD_PATTERN`); each C in ``cs`` is fitted on the
    training rows (scikit-learn's L-BFGS, multinomial) and scored on the validation rows;
    the best is scored once on the test rows.

    Args:
        train_texts, val_texts, test_texts: The raw texts of the three splits.
        train_y, val_y, test_y: Their int classes.
        cs: The C grid (inverse L2 strength).
        ngram_range: Word n-gram lengths.
        min_df: Drop n-grams in fewer training texts than this.
        seed: Passed to scikit-learn.

    Returns:
        ``{"name": "tfidf_logreg", "C", "val_accuracy", "test_accuracy", "features", "seconds",
        "path": [{"C", "val_accuracy"}, ...]}``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from .data.tokenize import WORD_PATTERN

    if not train_texts or not val_texts or not test_texts:
        raise DataError("the TF-IDF reference needs texts in the train, val and test splits")
    if not cs or min(cs) <= 0:
        raise ValueError(f"cs must be positive, got {list(cs)}")
    t0 = time.perf_counter()
    ytr, yva, yte = _labels(train_y), _labels(val_y), _labels(test_y)
    vectorizer = TfidfVectorizer(ngram_range=ngram_range, min_df=min_df, sublinear_tf=True, lowercase=True,
                                 token_pattern=WORD_PATTERN)
    xtr = vectorizer.fit_transform(list(train_texts))
    xva, xte = vectorizer.transform(list(val_texts)), vectorizer.transform(list(test_texts))
    path: list[dict[str, float]] = []
    best: tuple[float, float, Any] | None = None
    for c in sorted(cs):
        model = LogisticRegression(C=float(c), max_iter=2000, random_state=seed).fit(xtr, ytr)
        acc = float((model.predict(xva) == yva).mean())
        path.append({"C": float(c), "val_accuracy": acc})
        if best is None or acc > best[0]:
            best = (acc, float(c), model)
    assert best is not None
    val_acc, c, model = best
    return {
        "name": "tfidf_logreg", "C": c, "val_accuracy": val_acc, "test_accuracy": float((model.predict(xte) == yte).mean()),
        "features": int(xtr.shape[1]), "seconds": time.perf_counter() - t0, "path": path,
    }

