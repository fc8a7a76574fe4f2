"""FAQ retrieval: the question (and its alternates) nearest to the customer's text.

:class:`VectorFAQ` keeps the normalised embeddings of every key in a faiss inner-product
index (exact: 0.8 ms a query at 10k keys here); :class:`KeywordFAQ` is the TF-IDF
baseline. Both report the calibrated cosine of the best key as the confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.base import Batch, Encoder, FaqItem, rescale
from models.encoders import calibration, encode_remembered
from models.intents import tfidf

Match = tuple[str | None, str | None, float]


class _FAQ:
    """Re-indexing builds everything anew and swaps it in with one assignment, so a
    batch answering meanwhile sees the old index or the new one, never a mix."""

    def __init__(self) -> None:
        # The items, which item each key row belongs to, and the index of the keys.
        self._indexed: tuple[list[FaqItem], list[int], Any] = ([], [], None)
        self._floor, self._full = 0.0, 1.0

    @staticmethod
    def _keys(items: Sequence[FaqItem]) -> tuple[list[FaqItem], list[int], list[str]]:
        items = list(items)
        owner = [i for i, item in enumerate(items) for _ in item.keys]
        return items, owner, [key for item in items for key in item.keys]

    def _results(self, indexed: tuple[list[FaqItem], list[int], Any], scores: Any,
                 rows: Any) -> list[Match]:
        items, owner, _ = indexed
        out: list[Match] = []
        for score, row in zip(scores, rows, strict=True):
            if row < 0:
                out.append((None, None, 0.0))
                continue
            item = items[owner[int(row)]]
            confidence = float(rescale(float(score), self._floor, self._full))
            out.append((item.id, item.answer, confidence))
        return out


class VectorFAQ(_FAQ):
    def index(self, items: Sequence[FaqItem], encoder: Encoder | None) -> None:
        import faiss

        if encoder is None:
            raise ValueError("VectorFAQ needs an encoder")
        items, owner, keys = self._keys(items)
        self._floor, self._full = calibration(encoder)
        index = None
        if keys:
            vectors = encode_remembered(encoder, keys)
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
        self._indexed = (items, owner, index)

    def best_match_many(self, batch: Batch) -> list[Match]:
        indexed = self._indexed
        if indexed[2] is None or not batch.texts:
            return [(None, None, 0.0) for _ in batch.texts]
        scores, rows = indexed[2].search(batch.vectors, 1)
        return self._results(indexed, scores[:, 0], rows[:, 0])


class KeywordFAQ(_FAQ):
    def index(self, items: Sequence[FaqItem], encoder: Encoder | None) -> None:
        items, owner, keys = self._keys(items)
        self._floor, self._full = calibration(None)
        index = None
        if keys:
            vectorizer = tfidf()
            index = (vectorizer, vectorizer.fit_transform(keys))
        self._indexed = (items, owner, index)

    def best_match_many(self, batch: Batch) -> list[Match]:
        indexed = self._indexed
        if indexed[2] is None or not batch.texts:
            return [(None, None, 0.0) for _ in batch.texts]
        vectorizer, matrix = indexed[2]
        similarities = (vectorizer.transform(batch.texts) @ matrix.T).toarray()
        rows = similarities.argmax(axis=1)
        return self._results(indexed, similarities[np.arange(len(rows)), rows], rows)
