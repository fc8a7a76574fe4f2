"""Intent recognizers: a linear head with a nearest-neighbour check, over sentence
embeddings (default) or TF-IDF features (the keyword baseline).

Confidence: the classifier's probability alone is overconfident on questions unlike any
training example (a softmax over a few intents always picks one). So the confidence is
the smaller of the probability and the calibrated cosine to the nearest training example
of the predicted intent: an intent is only sure when a classifier and a neighbour agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from models.base import Batch, Encoder, rescale
from models.encoders import calibration


class _LinearIntents:
    """Shared fit/predict; subclasses say what the features of a batch are."""

    def __init__(self, c: float = 10.0) -> None:
        self.labels: list[str] = []
        self._c = c
        self._head: LogisticRegression | None = None
        self._examples: Any = None
        self._example_labels: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._floor, self._full = 0.0, 1.0

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        raise NotImplementedError

    def _features(self, batch: Batch) -> Any:
        raise NotImplementedError

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            encoder: Encoder | None) -> None:
        if len(texts) != len(labels) or not texts:
            raise ValueError("intents: need as many labels as texts, and at least one")
        self.labels = sorted(set(labels))
        index = {label: i for i, label in enumerate(self.labels)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        x = self._fit_features(texts, encoder)
        self._examples, self._example_labels = x, y
        self._head = None
        if len(self.labels) > 1:
            self._head = LogisticRegression(C=self._c, max_iter=2000)
            self._head.fit(x, y)

    def recognize_many(self, batch: Batch) -> list[tuple[str, float]]:
        if not self.labels or not batch.texts:
            return [("", 0.0) for _ in batch.texts]
        x = self._features(batch)
        if self._head is None:
            predicted = np.zeros(len(batch.texts), dtype=np.int64)
            probability = np.ones(len(batch.texts), dtype=np.float32)
        else:
            probabilities = self._head.predict_proba(x)
            predicted = probabilities.argmax(axis=1)
            probability = probabilities.max(axis=1)
        similarities = x @ self._examples.T
        if hasattr(similarities, "toarray"):  # TF-IDF features are sparse
            similarities = similarities.toarray()
        similarities = np.asarray(similarities)
        same = self._example_labels[None, :] == predicted[:, None]
        nearest = np.where(same, similarities, -1.0).max(axis=1)
        confidence = np.minimum(probability, rescale(nearest, self._floor, self._full))
        return [(self.labels[int(p)], float(c)) for p, c in zip(predicted, confidence,
                                                                strict=True)]


class EmbeddingIntents(_LinearIntents):
    """Logistic regression over the model's sentence embeddings."""

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        if encoder is None:
            raise ValueError("EmbeddingIntents needs an encoder")
        self._floor, self._full = calibration(encoder)
        return encoder.encode(list(texts))

    def _features(self, batch: Batch) -> Any:
        return batch.vectors


def tfidf() -> TfidfVectorizer:
    """Character n-grams within words: works for English and for Chinese (no spaces)."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True,
                           lowercase=True)


class KeywordIntents(_LinearIntents):
    """The baseline: TF-IDF character n-grams and logistic regression."""

    def __init__(self, c: float = 10.0) -> None:
        super().__init__(c)
        self._vectorizer = tfidf()

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        self._floor, self._full = calibration(None)
        return self._vectorizer.fit_transform(list(texts))

    def _features(self, batch: Batch) -> Any:
        return self._vectorizer.transform(batch.texts)
