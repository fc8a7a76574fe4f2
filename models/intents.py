"""Intent recognizers: linear heads with a nearest-neighbour check, over sentence
embeddings (default) or TF-IDF features (the keyword baseline).

:class:`EmbeddingIntents` ensembles two logistic regressions, one over the sentence
embeddings and one over word (and, for Chinese, character) TF-IDF n-grams: their
log-probabilities are mixed, ``keyword_weight`` for the TF-IDF one. The embedding knows
paraphrases, the n-grams the exact product words the encoder blurs, and the Chinese the
English MiniLM cannot read. With MiniLM (benchmarks/intent_eval.py): BANKING77 93.0 ->
94.2%, HWU64 91.4 -> 92.3%, CLINC150 in-scope 95.5 -> 95.8%.

Confidence: the classifier's probability alone is overconfident on questions unlike any
training example (a softmax over a few intents always picks one), and the cosine alone
cannot tell two close intents apart. So the confidence is the geometric mean of the
probability of the predicted intent and the calibrated cosine to its nearest training
example of that intent (:func:`models.base.rescale`): both must be high. The mean is then
raised to ``sharpness``, a monotone recalibration that changes no ranking, so that the
product's default threshold of 0.6 is the right one: on CLINC150 the threshold chosen on
val lands at 0.60, and on test keeps 94.1% in-scope accuracy with 82.6% out-of-scope
recall (was 62% with the minimum of probability and cosine and no n-grams).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from models.base import Batch, Encoder, rescale
from models.encoders import calibration, encode_remembered

Floats = npt.NDArray[np.float64]
# Fitted on CLINC150 val so that a threshold of 0.6 is the right one (module docstring).
MINILM_SHARPNESS = 0.47

# A word, or one CJK character (Chinese has no spaces: its bigrams are then words).
_TOKENS = r"[\u3400-\u9fff\uf900-\ufaff]|[^\W\u3400-\u9fff\uf900-\ufaff]+"


class Tfidf:
    """TF-IDF features: sklearn's vectorizer learns the vocabulary and the weights, and
    :meth:`transform` computes the same numbers (tests/unit/test_intents.py) for the few
    texts of a bot pass without sklearn's input checks and wrappers: 0.085-0.105 ms of
    CPU for one question against 0.69-0.92 ms (the default model's word n-grams;
    benchmarks/results/tfidf_transform.json)."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        if vectorizer.norm != "l2" or not vectorizer.use_idf:
            raise ValueError("Tfidf: needs an l2-normalised vectorizer with idf weights")
        self._vectorizer = vectorizer
        self._analyze: Any = None
        self._vocabulary: dict[str, int] = {}
        self._idf: Floats = np.zeros(0)

    def fit_transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        x = self._vectorizer.fit_transform(list(texts))
        self._analyze = self._vectorizer.build_analyzer()
        self._vocabulary = self._vectorizer.vocabulary_
        self._idf = np.asarray(self._vectorizer.idf_, dtype=np.float64)
        return sparse.csr_matrix(x)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        if self._analyze is None:
            raise ValueError("Tfidf: transform before fit_transform")
        sublinear = self._vectorizer.sublinear_tf
        indptr, indices, values = [0], [], []
        for text in texts:
            counts = Counter(column for term in self._analyze(text)
                             if (column := self._vocabulary.get(term)) is not None)
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if sublinear:
                tf = np.log(tf) + 1.0
            weights = tf * self._idf[columns]
            norm = np.sqrt(np.dot(weights, weights))
            indices.append(columns)
            values.append(weights / norm if norm > 0 else weights)
            indptr.append(indptr[-1] + len(columns))
        return sparse.csr_matrix(
            (np.concatenate(values) if values else np.zeros(0),
             np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64), indptr),
            shape=(len(texts), len(self._idf)))


def tfidf() -> Tfidf:
    """Character n-grams within words: works for English and for Chinese (no spaces)."""
    return Tfidf(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True,
                                 lowercase=True))


def word_tfidf() -> Tfidf:
    """Word unigrams and bigrams (CJK characters count as words): sparse and quick to fit."""
    return Tfidf(TfidfVectorizer(token_pattern=_TOKENS, ngram_range=(1, 2),
                                 sublinear_tf=True, lowercase=True))


def _logistic(x: Any, y: npt.NDArray[np.int64], c: float,
              loose: bool = False) -> LogisticRegression:
    """A multinomial logistic regression; ``loose``: saga with a loose tolerance, for the
    word n-grams (lbfgs takes several times longer there for the same accuracy)."""
    if not loose:
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)
    head = LogisticRegression(C=c, solver="saga", max_iter=200, tol=1e-3, random_state=0)
    with warnings.catch_warnings():
        # Stopping early is the point: the last digits of the weights change nothing.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return head.fit(x, y)


def _log_proba(head: LogisticRegression, x: Any) -> Floats:
    """``head.predict_log_proba(x)`` for a multinomial head, computed directly: sklearn's
    input checks cost more than the product itself for a batch of a few questions (~2 ms
    of the ~10 ms a question costs the Assistant here)."""
    coef = head.coef_
    if coef.shape[0] == 1:  # two classes: sklearn's own special case
        return np.asarray(head.predict_log_proba(x), dtype=np.float64)
    scores = np.asarray(x @ coef.T, dtype=np.float64) + head.intercept_
    scores -= scores.max(axis=1, keepdims=True)
    return np.asarray(scores - np.log(np.exp(scores).sum(axis=1, keepdims=True)),
                      dtype=np.float64)


class _LinearIntents:
    """Shared fit/predict; subclasses say what the features of a batch are."""

    def __init__(self, c: float = 10.0, sharpness: float = 1.0) -> None:
        self.labels: list[str] = []
        self._c = c
        self._sharpness = sharpness
        self._head: LogisticRegression | None = None
        self._examples: Any = None
        self._example_labels: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._floor, self._full = 0.0, 1.0

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        raise NotImplementedError

    def _features(self, batch: Batch) -> Any:
        raise NotImplementedError

    def _fit_extra(self, texts: Sequence[str], y: npt.NDArray[np.int64]) -> None:
        """Fit any further head on the same examples (none here)."""

    def _log_probabilities(self, batch: Batch, x: Any) -> Floats:
        assert self._head is not None
        return _log_proba(self._head, x)

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
            self._head = _logistic(x, y, self._c)
            self._fit_extra(texts, y)

    def recognize_many(self, batch: Batch) -> list[tuple[str, float]]:
        if not self.labels or not batch.texts:
            return [("", 0.0) for _ in batch.texts]
        x = self._features(batch)
        if self._head is None:
            predicted = np.zeros(len(batch.texts), dtype=np.int64)
            probability = np.ones(len(batch.texts), dtype=np.float64)
        else:
            log_probabilities = self._log_probabilities(batch, x)
            predicted = log_probabilities.argmax(axis=1)
            probability = np.exp(log_probabilities.max(axis=1))
        similarities = x @ self._examples.T
        if hasattr(similarities, "toarray"):  # TF-IDF features are sparse
            similarities = similarities.toarray()
        similarities = np.asarray(similarities)
        same = self._example_labels[None, :] == predicted[:, None]
        nearest = np.where(same, similarities, -1.0).max(axis=1)
        agreement = probability * rescale(nearest, self._floor, self._full)
        confidence = np.sqrt(agreement) ** self._sharpness
        return [(self.labels[int(p)], float(c)) for p, c in zip(predicted, confidence,
                                                                strict=True)]


class EmbeddingIntents(_LinearIntents):
    """Logistic regression over the model's sentence embeddings, mixed with one over word
    TF-IDF n-grams (``keyword_weight``; 0 for the embeddings alone)."""

    def __init__(self, c: float = 10.0, keyword_weight: float = 0.3,
                 sharpness: float | None = None) -> None:
        super().__init__(c, 1.0)
        # None: the encoder's own (``intent_sharpness``), else MiniLM's.
        self._chosen_sharpness = sharpness
        self._keyword_weight = keyword_weight
        self._vectorizer = word_tfidf()
        self._keyword_head: LogisticRegression | None = None

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        if encoder is None:
            raise ValueError("EmbeddingIntents needs an encoder")
        self._floor, self._full = calibration(encoder)
        self._sharpness = self._chosen_sharpness if self._chosen_sharpness is not None \
            else float(getattr(encoder, "intent_sharpness", MINILM_SHARPNESS))
        return encode_remembered(encoder, texts)

    def _features(self, batch: Batch) -> Any:
        return batch.vectors

    def _fit_extra(self, texts: Sequence[str], y: npt.NDArray[np.int64]) -> None:
        self._keyword_head = None
        if self._keyword_weight > 0:
            x = self._vectorizer.fit_transform(texts)
            self._keyword_head = _logistic(x, y, self._c, loose=True)

    def _log_probabilities(self, batch: Batch, x: Any) -> Floats:
        mixed = super()._log_probabilities(batch, x)
        if self._keyword_head is None:
            return mixed
        keyword = _log_proba(self._keyword_head, self._vectorizer.transform(batch.texts))
        mixed = (1 - self._keyword_weight) * mixed + self._keyword_weight * keyword
        # Renormalise: a weighted mean of log-probabilities is not one.
        shifted = mixed - mixed.max(axis=1, keepdims=True)
        return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)),
                          dtype=np.float64)


class KeywordIntents(_LinearIntents):
    """The baseline: TF-IDF character n-grams and logistic regression."""

    def __init__(self, c: float = 10.0, sharpness: float = 1.0) -> None:
        super().__init__(c, sharpness)
        self._vectorizer = tfidf()

    def _fit_features(self, texts: Sequence[str], encoder: Encoder | None) -> Any:
        self._floor, self._full = calibration(None)
        return self._vectorizer.fit_transform(texts)

    def _features(self, batch: Batch) -> Any:
        return self._vectorizer.transform(batch.texts)
