"""models.intents' direct log-probabilities equal sklearn's, dense and sparse, for two
classes and many; its TF-IDF features equal sklearn's vectorizer's (pure logic: small
synthetic data, no encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from models.intents import _log_proba, tfidf, word_tfidf


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_dense_log_probabilities_equal_sklearns(classes: int) -> None:
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(60, 12))
    y = np.arange(60) % classes
    head = LogisticRegression(max_iter=500).fit(x, y)
    queries = rng.normal(size=(5, 12)).astype(np.float32)
    assert np.allclose(_log_proba(head, queries), head.predict_log_proba(queries), atol=1e-9)


def test_sparse_log_probabilities_equal_sklearns() -> None:
    texts = ["card arrived", "card lost", "refund please", "refund late", "hello", "hi there"]
    y = np.array([0, 0, 1, 1, 2, 2])
    vectorizer = TfidfVectorizer()
    head = LogisticRegression(max_iter=500).fit(vectorizer.fit_transform(texts), y)
    queries = vectorizer.transform(["my card", "a refund", "nothing known"])
    got = _log_proba(head, queries)
    assert got.shape == (3, 3)
    assert np.allclose(got, head.predict_log_proba(queries), atol=1e-9)
    assert got.argmax(axis=1).tolist() == [0, 1, head.predict(queries)[2]]


@pytest.mark.parametrize("make", [tfidf, word_tfidf])
def test_tfidf_features_equal_sklearns(make: object) -> None:
    texts = ["My card arrived", "card lost, card gone", "Refund please", "refund late",
             "hello", "hi there", "转人工", "我要人工客服"]
    features = make()  # type: ignore[operator]
    with pytest.raises(ValueError, match="before fit"):
        features.transform(["hello"])
    fitted = features.fit_transform(texts)
    queries = ["where is my CARD card", "refund", "转人工 please", "", "zzz qqq",
               "hello hello hello there"]
    got = features.transform(queries)
    expected = features._vectorizer.transform(queries)
    assert got.shape == expected.shape == (len(queries), fitted.shape[1])
    assert np.allclose(got.toarray(), expected.toarray(), atol=1e-12)
    # Known words give a unit row; nothing known (empty text, unknown words) a zero row.
    norms = np.linalg.norm(got.toarray(), axis=1)
    assert np.allclose(norms[[0, 1, 2, 5]], 1.0)
    assert norms[3] == 0.0
    assert features.transform([]).shape == (0, fitted.shape[1])
