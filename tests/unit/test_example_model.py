"""models.example_model, the how-to's custom model: loaded the way the Assistant loads it,
it answers FAQ paraphrases and small talk confidently and unrelated text not at all.

Loads MiniLM from the installed package (offline, ~10 s on 2 cores); no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base import Batch, FaqItem, IntentRecognizer, Model
from models.default import training_examples
from models.example_model import NearestNeighbourIntents, build
from models.loader import load_model, resolve
from models.policy import FallbackPolicy

FAQ = [
    FaqItem("reset", "How do I reset my password?",
            "Use the 'Forgot password' link on the sign-in page.", ("I forgot my password",)),
    FaqItem("hours", "What are your opening hours?",
            "We are open 9:00-18:00, Monday to Friday.", ("When are you open?",)),
    FaqItem("delivery", "When will my card arrive?", "Cards arrive within 5 working days."),
]
THRESHOLD = FallbackPolicy().threshold


@pytest.fixture(scope="module")
def model() -> Model:
    built = load_model("models.example_model:build", "ex-1", {})
    built.index_faq(FAQ)
    return built


def test_the_builder_returns_a_model_with_the_given_version(model: Model) -> None:
    """load_model calls the builder and stamps the version bot messages record."""
    assert model.version == "ex-1"
    assert model.meta["intents"] == "nearest-neighbour"
    recognizer: IntentRecognizer = model.intents  # satisfies the protocol (mypy checks)
    assert {"greeting", "thanks", "goodbye", "human"} <= set(recognizer.labels)


def test_a_paraphrase_finds_its_faq_item(model: Model) -> None:
    """A rewording of an FAQ question gets that item's id at or above the threshold."""
    faq_id, answer, confidence = model.best_match("i can't remember my password")
    assert faq_id == "reset" and answer == FAQ[0].answer
    assert confidence >= THRESHOLD


def test_a_greeting_is_recognised(model: Model) -> None:
    """Small talk gets its built-in intent, confidently."""
    intent, confidence = model.recognize("hello there!")
    assert intent == "greeting" and confidence >= THRESHOLD


def test_unrelated_text_gets_low_confidence(model: Model) -> None:
    """Text like no example and no FAQ item stays under the threshold in both parts."""
    [analysis] = model.analyze(["The mitochondria is the powerhouse of the cell"])
    assert analysis.intent_confidence < THRESHOLD
    assert analysis.faq_confidence < THRESHOLD


def test_the_policy_answers_from_the_analysis(model: Model) -> None:
    """End to end without Ray: analysis of a batch, then the bot's decision per text."""
    policy = FallbackPolicy()
    texts = ["when do you open?", "thanks a lot!", "quantum chromodynamics lecture notes"]
    answer, thanks, unknown = (policy.decide(t, a, 0)
                               for t, a in zip(texts, model.analyze(texts), strict=True))
    assert answer.action == "answer" and answer.faq_id == "hours"
    assert thanks.action == "answer" and thanks.intent == "thanks"
    assert unknown.action == "handoff" and unknown.reason == "low_confidence"


def test_intents_file_adds_intents(model: Model, tmp_path: Path) -> None:
    """The intents_file option (CSV text,intent) adds an intent the recognizer then finds;
    fitted with the loaded model's encoder to spare a second load."""
    csv = tmp_path / "intents.csv"
    csv.write_text("text,intent\nwhere is my parcel,track_order\n"
                   "track my order,track_order\nhas my package shipped yet,track_order\n",
                   encoding="utf-8")
    recognizer = NearestNeighbourIntents(k=3)
    recognizer.fit(*training_examples(csv), model.encoder)
    assert "track_order" in recognizer.labels
    batch = Batch(["where is my parcel now?"], model.encoder)
    [(intent, confidence)] = recognizer.recognize_many(batch)
    assert intent == "track_order" and confidence >= THRESHOLD


def test_model_directory_resolves_to_the_builder(tmp_path: Path) -> None:
    """A model directory's model.yaml names the builder; relative *_file options are taken
    from the directory, and options given at rollout win over the file's (nothing built)."""
    (tmp_path / "model.yaml").write_text(
        "builder: models.example_model:build\n"
        "options: {k: 5, intents_file: intents.csv}\n", encoding="utf-8")
    builder, options = resolve(str(tmp_path), {"k": 7})
    assert builder is build
    assert options == {"k": 7, "intents_file": str(tmp_path.resolve() / "intents.csv")}


def test_k_must_be_positive() -> None:
    """A recognizer with no neighbours to ask is refused when it is made."""
    with pytest.raises(ValueError, match="k must be at least 1"):
        NearestNeighbourIntents(k=0)
