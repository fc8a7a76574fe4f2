"""models.encoders.encode_remembered: a model's examples are encoded once per machine and
read back on the next load; a bad or foreign file is encoded again and replaced; a cache
that cannot be written costs nothing but the saving. The logic runs on a counting encoder
with made-up vectors; the last test builds the real default model twice (MiniLM,
offline)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from models import encoders
from models.default import build


class Counting:
    """An encoder whose vector for a text is fixed by the text; counts what it encodes."""

    name = "counting"

    def __init__(self, identity: str | None = "counting-1") -> None:
        if identity is not None:
            self.identity = identity
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += texts
        rows = [np.random.default_rng(sum(map(ord, text))).normal(size=8) for text in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 8)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


TEXTS = ["my card is late", "reset my password", "where is my refund", "hello there"]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(encoders, "REMEMBER_FROM", 3)
    return tmp_path / "cache" / "vectors"


def test_vectors_are_encoded_once_and_read_back(cache: Path) -> None:
    first = Counting()
    vectors = encoders.encode_remembered(first, TEXTS)
    assert first.encoded == TEXTS
    assert len(list(cache.glob("*.npy"))) == 1
    again = Counting()
    read = encoders.encode_remembered(again, TEXTS)
    assert again.encoded == []
    assert read.dtype == np.float32
    assert np.array_equal(read, vectors)
    # Other texts, or the same texts from other weights, are other vectors.
    encoders.encode_remembered(again, TEXTS[:3])
    assert again.encoded == TEXTS[:3]
    other_weights = Counting("counting-2")
    encoders.encode_remembered(other_weights, TEXTS)
    assert other_weights.encoded == TEXTS
    assert len(list(cache.glob("*.npy"))) == 3


def test_few_texts_and_encoders_without_identity_are_not_kept(cache: Path) -> None:
    few = Counting()
    encoders.encode_remembered(few, TEXTS[:2])
    encoders.encode_remembered(few, TEXTS[:2])
    assert few.encoded == TEXTS[:2] * 2
    anonymous = Counting(identity=None)
    encoders.encode_remembered(anonymous, TEXTS)
    encoders.encode_remembered(anonymous, TEXTS)
    assert anonymous.encoded == TEXTS * 2
    assert not cache.exists() or not list(cache.glob("*.npy"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other shape"])
def test_a_bad_file_is_encoded_again_and_replaced(cache: Path, damage: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    vectors = encoders.encode_remembered(Counting(), TEXTS)
    [path] = cache.glob("*.npy")
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        np.save(path, np.zeros((2, 8), dtype=np.float32))
    encoder = Counting()
    with caplog.at_level(logging.WARNING, logger="raydesk.models"):
        again = encoders.encode_remembered(encoder, TEXTS)
    assert encoder.encoded == TEXTS
    assert np.array_equal(again, vectors)
    assert str(path) in caplog.text
    # Replaced: the next load reads it.
    last = Counting()
    assert np.array_equal(encoders.encode_remembered(last, TEXTS), vectors)
    assert last.encoded == []


def test_a_cache_that_cannot_be_written_only_costs_the_saving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache's parent is a file, so nothing can be made under it")
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(encoders, "REMEMBER_FROM", 3)
    encoder = Counting()
    with caplog.at_level(logging.WARNING, logger="raydesk.models"):
        vectors = encoders.encode_remembered(encoder, TEXTS)
    assert vectors.shape == (4, 8)
    assert encoder.encoded == TEXTS
    assert "cannot keep vectors" in caplog.text


def test_only_the_newest_files_are_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders, "VECTOR_FILES_KEPT", 2)
    sets = [TEXTS, TEXTS[1:], TEXTS[:3]]
    for texts in sets:
        encoders.encode_remembered(Counting(), texts)
    assert len(list(cache.glob("*.npy"))) == 2
    # The oldest set went; the two newest are read back.
    newest = Counting()
    for texts in sets[1:]:
        encoders.encode_remembered(newest, texts)
    assert newest.encoded == []
    oldest = Counting()
    encoders.encode_remembered(oldest, sets[0])
    assert oldest.encoded == sets[0]


def test_the_default_model_loads_its_examples_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(encoders, "REMEMBER_FROM", 20)
    intents = tmp_path / "intents.csv"
    rows = [(f"my card number {i} has not arrived yet", "card_arrival") for i in range(15)] + \
        [(f"how do I reset password number {i}", "password_reset") for i in range(15)]
    with intents.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "intent"), *rows])
    encoded: list[str] = []
    real_encode = encoders.MiniLM.encode

    def counting(self: encoders.MiniLM, texts: Sequence[str]) -> np.ndarray:
        encoded.extend(texts)
        return real_encode(self, texts)

    monkeypatch.setattr(encoders.MiniLM, "encode", counting)
    questions = ["my card still has not arrived", "I forgot my password"]
    first = build({"intents_file": str(intents)}).analyze(questions)
    examples = len(encoded)
    assert examples >= len(rows)  # the built-in intents' and the file's, then the questions
    encoded.clear()
    second = build({"intents_file": str(intents)}).analyze(questions)
    assert encoded == questions  # the examples came from the cache
    assert [a.intent for a in second] == [a.intent for a in first] == \
        ["card_arrival", "password_reset"]
    assert [a.intent_confidence for a in second] == [a.intent_confidence for a in first]
