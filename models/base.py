"""The bot's model interfaces: small, so a data scientist can swap any one part.

A :class:`Model` turns a batch of customer texts into :class:`Analysis` results with one
encoder pass shared by its :class:`IntentRecognizer` and :class:`FAQEngine`. Whether the
bot answers, asks again or hands off is not the model's call: :mod:`models.policy` decides
that from the analysis, so a new model needs no change elsewhere.

Confidences are in [0, 1] and mean the same for every model: the bot answers at or above
``bot.threshold`` (config). A model calibrates its own scores to that scale.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FaqItem:
    id: str
    question: str
    answer: str
    alternates: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every phrasing that should find this answer: the question and its alternates."""
        return (self.question, *self.alternates)


@dataclass(frozen=True)
class Analysis:
    """What a model makes of one customer text."""

    intent: str | None = None
    intent_confidence: float = 0.0
    faq_id: str | None = None
    faq_answer: str | None = None
    faq_confidence: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"intent": self.intent, "intent_confidence": self.intent_confidence,
                "faq_id": self.faq_id, "faq_answer": self.faq_answer,
                "faq_confidence": self.faq_confidence}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        return cls(**{k: data.get(k) for k in ("intent", "faq_id", "faq_answer")},
                   intent_confidence=float(data.get("intent_confidence") or 0.0),
                   faq_confidence=float(data.get("faq_confidence") or 0.0))


@runtime_checkable
class Encoder(Protocol):
    """Sentences to L2-normalised vectors (so a dot product is a cosine).

    An encoder may also have ``identity``, a string that changes whenever its vectors
    would (which weights, run how): then many texts' vectors are kept in the model cache
    between loads (:func:`models.encoders.encode_remembered`)."""

    name: str

    def encode(self, texts: Sequence[str]) -> Vectors: ...


@dataclass
class Batch:
    """Texts of one batch; their vectors are computed once, on first use."""

    texts: list[str]
    encoder: Encoder | None = None

    @functools.cached_property
    def vectors(self) -> Vectors:
        if self.encoder is None:
            raise TypeError("this model has no encoder")
        return self.encoder.encode(self.texts)


class IntentRecognizer(Protocol):
    labels: list[str]

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            encoder: Encoder | None) -> None: ...

    def recognize_many(self, batch: Batch) -> list[tuple[str, float]]: ...


class FAQEngine(Protocol):
    def index(self, items: Sequence[FaqItem], encoder: Encoder | None) -> None: ...

    def best_match_many(self, batch: Batch) -> list[tuple[str | None, str | None, float]]:
        ...


@dataclass
class Model:
    """An encoder, an intent recognizer and an FAQ engine, served as one unit."""

    version: str
    intents: IntentRecognizer
    faq: FAQEngine
    encoder: Encoder | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def index_faq(self, items: Sequence[FaqItem]) -> None:
        self.faq.index(items, self.encoder)

    def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        batch = Batch(list(texts), self.encoder)
        intents = self.intents.recognize_many(batch)
        matches = self.faq.best_match_many(batch)
        return [Analysis(intent, round(float(ic), 4), faq_id, answer, round(float(fc), 4))
                for (intent, ic), (faq_id, answer, fc) in zip(intents, matches, strict=True)]

    # The single-text forms of the interfaces, for notebooks and tests.
    def recognize(self, text: str) -> tuple[str, float]:
        return self.intents.recognize_many(Batch([text], self.encoder))[0]

    def best_match(self, text: str) -> tuple[str | None, str | None, float]:
        return self.faq.best_match_many(Batch([text], self.encoder))[0]


def rescale(similarity: npt.NDArray[np.float32] | float, floor: float,
            full: float) -> npt.NDArray[np.float32]:
    """Map a cosine to a confidence: ``floor`` and below is 0, ``full`` and above is 1."""
    scaled = (np.asarray(similarity, dtype=np.float32) - floor) / (full - floor)
    clipped: npt.NDArray[np.float32] = np.clip(scaled, 0, 1).astype(np.float32)
    return clipped
