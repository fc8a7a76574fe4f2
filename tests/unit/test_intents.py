"""models.intents' direct log-probabilities equal sklearn's, dense and sparse, for two
classes and many (pure logic: small synthetic data, no encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from models.intents import _log_proba


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
