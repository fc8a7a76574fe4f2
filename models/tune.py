"""Fine-tune MiniLM on your own labelled questions: ``raydesk model train``.

The default bot fits its intent heads on frozen MiniLM embeddings in seconds at start-up.
With few examples per intent that leaves accuracy on the table: the frozen encoder puts
"my card has not arrived" and "I lost my card" close together because both are about a
card. Fine-tuning pulls the examples of one intent together and pushes the others apart
(a supervised contrastive loss, Khosla et al. 2020, the fine-tuning stage of CPFT):
each step takes ``intents_per_batch`` intents and two examples of each, and every example
is asked to find its partner among the others. Measured on BANKING77 with 10 examples per
intent: docs/explanation/bot.md.

It runs once, offline, with torch (minutes of CPU, not at serving time), and writes a
model directory that ``raydesk model use DIR`` serves::

    DIR/model.yaml    builder: models.default:build, options: encoder, encoder_dir,
                      intents_file, intent_sharpness (TUNED_SHARPNESS)
    DIR/intents.csv   the examples it was trained on (the intent heads are fitted on them)
    DIR/encoder/      the tuned weights, sentence-transformers' layout

Given unlabelled customer questions too (``--questions``: what customers really ask, say
a ``raydesk export unanswered`` file), it labels them itself after tuning
(:func:`self_train`): the intent head over the tuned encoder labels them, the most
confident share joins the examples, the head is fitted again, and so on for a few rounds.
``DIR/intents.csv`` then holds both, told apart by its ``origin`` column (``labelled`` or
``self``, with the confidence), so the served heads learn from the questions as well.

The encoder directory is exported to ONNX like the shipped MiniLM (models/encoders.py),
keyed by its own weights, so serving never imports torch.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from models.base import Batch, Encoder, IntentRecognizer, Vectors
from models.encoders import MiniLMTorch, sentence_transformer

# The intent confidence's calibration exponent for a tuned MiniLM (models/intents.py; the
# shipped MiniLM's is 0.47). Tuning makes an intent's examples agree more, so confidences
# run higher: with MiniLM tuned on CLINC150's training split, the threshold chosen on its
# val split (as for the shipped one) was 0.744 instead of 0.60. This exponent
# maps that threshold to 0.6, so `bot.threshold: 0.6` keeps its meaning
# (benchmarks/intent_eval.py --tune; docs/explanation/bot.md).
TUNED_SHARPNESS = 0.81


# The encoders whose weights ``raydesk model train`` tunes (and how they are then served).
TUNABLE = ("minilm", "minilm-int8")


@dataclass(frozen=True)
class TuneSettings:
    """What ``fine_tune`` does. The defaults are the ones measured in
    docs/explanation/bot.md (BANKING77, 10 examples per intent)."""

    steps: int = 150
    intents_per_batch: int = 32
    temperature: float = 0.05
    learning_rate: float = 2e-5
    seed: int = 0
    threads: int | None = None
    # Self-training on unlabelled questions (self_train): the share of them kept in each
    # round (the most confident), and the rounds. Chosen over the frozen encoder on the
    # mean of CLINC150 val and HWU64, never on BANKING77 (benchmarks/self_training.py,
    # docs/explanation/bot.md).
    keep: float = 0.9
    rounds: int = 2


def _refuse_existing(out: Path) -> None:
    if out.exists():
        raise ValueError(f"tune: {out} exists; give a new folder")


@contextlib.contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A new folder beside ``out``, renamed to ``out`` if the block succeeds and removed
    if it fails: a half-written model never appears under the final name."""
    _refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield staging
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _grouped(texts: Sequence[str], labels: Sequence[str]) -> dict[str, list[str]]:
    """Examples by intent; ValueError unless at least two intents have two examples (a
    step needs an example's partner and other intents to tell it from)."""
    if len(texts) != len(labels):
        raise ValueError("tune: need as many labels as texts")
    by_intent: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_intent.setdefault(label, []).append(text)
    usable = [label for label, examples in by_intent.items() if len(examples) >= 2]
    if len(usable) < 2:
        raise ValueError("tune: need at least two intents with two examples or more each "
                         f"(got {len(by_intent)} intents, {len(usable)} with two or more)")
    return {label: by_intent[label] for label in usable}


def _supervised_contrastive(vectors: Any, groups: Any, temperature: float) -> Any:
    """The SupCon loss of a batch of unit vectors: each one's mean log-likelihood of its
    own intent's other examples against every other vector of the batch."""
    import torch

    similarity = vectors @ vectors.T / temperature
    own = torch.eye(len(groups), dtype=torch.bool)
    similarity = similarity.masked_fill(own, float("-inf"))
    log_likelihood = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    partners = (groups[:, None] == groups[None, :]) & ~own
    per_vector = log_likelihood.masked_fill(~partners, 0.0).sum(1) / partners.sum(1)
    return -per_vector.mean()


def fine_tune(texts: Sequence[str], labels: Sequence[str], out: Path,
              settings: TuneSettings = TuneSettings(), source: Path | None = None,
              progress: Callable[[int, float], None] | None = None) -> Path:
    """Fine-tune the MiniLM in ``source`` (default: the shipped one) on the examples and
    save it, sentence-transformers' layout, to ``out`` (which must not exist: it is
    written aside and renamed, so a run that fails leaves nothing behind)."""
    _refuse_existing(out)
    by_intent = _grouped(texts, labels)
    import torch

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    rng = random.Random(settings.seed)
    model = sentence_transformer(source)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    intents = sorted(by_intent)
    per_batch = min(settings.intents_per_batch, len(intents))
    for step in range(settings.steps):
        batch: list[str] = []
        groups: list[int] = []
        for group, intent in enumerate(rng.sample(intents, per_batch)):
            batch += rng.sample(by_intent[intent], 2)
            groups += [group, group]
        embedded = model(model.preprocess(batch))["sentence_embedding"]
        vectors = torch.nn.functional.normalize(embedded, dim=1)
        loss = _supervised_contrastive(vectors, torch.tensor(groups), settings.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, float(loss.detach()))
    model.eval()
    with _staged(out) as partial:
        model.save(str(partial))
    return out


def read_questions(path: Path) -> list[str]:
    """Unlabelled questions, each once: the ``text`` column of a Parquet file (as
    ``raydesk export unanswered`` writes) or of a CSV file, else one per line."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise ValueError(f"{path}: no text column (has {', '.join(table.column_names)})")
        texts = [str(t) for t in table.column("text").to_pylist() if t is not None]
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if "text" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: need a text column")
            texts = [row["text"] or "" for row in reader]
    else:
        texts = path.read_text("utf-8").splitlines()
    questions = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not questions:
        raise ValueError(f"{path}: no questions in it")
    return questions


class _Remembered:
    """An encoder that encodes each text once: self-training fits the head again and
    again on the same examples and questions. Calibration attributes are the inner one's.
    It has no ``identity``: its memory already spares the encoding, and each round's
    texts written to the model cache (models.encoders.encode_remembered) would only be
    files that no load reads."""

    identity = None

    def __init__(self, inner: Encoder) -> None:
        self.name = inner.name
        self._inner = inner
        self._rows: dict[str, Any] = {}

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)

    def encode(self, texts: Sequence[str]) -> Vectors:
        missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if missing:
            self._rows.update(zip(missing, self._inner.encode(missing), strict=True))
        return np.stack([self._rows[t] for t in texts]) if texts else \
            self._inner.encode([])


@dataclass(frozen=True)
class SelfLabelled:
    """The questions self-training kept, their intents and confidences, and the intent
    head fitted on the examples and them (over the encoder it was given)."""

    texts: list[str]
    intents: list[str]
    confidences: list[float]
    head: IntentRecognizer


def self_train(texts: Sequence[str], labels: Sequence[str], questions: Sequence[str],
               encoder: Encoder, settings: TuneSettings = TuneSettings()) -> SelfLabelled:
    """The questions the default intent head labels with the most confidence: fitted on
    the examples, it labels the questions (those not among the examples); the ``keep``
    share it is surest of join the examples and it is fitted again; ``rounds`` times. The
    last round's pick, with the labels and confidences that picked them."""
    from models.intents import EmbeddingIntents

    if not 0 < settings.keep <= 1 or settings.rounds < 1:
        raise ValueError("tune: keep must be in (0, 1] and rounds at least 1")
    known = set(texts)
    pool = [q for q in questions if q not in known]
    encoder = _Remembered(encoder)
    head = EmbeddingIntents()
    head.fit(texts, labels, encoder)
    picked = SelfLabelled([], [], [], head)
    batch = Batch(pool, encoder)  # the questions are encoded once, for every round
    for _ in range(settings.rounds if pool else 0):
        intents, confidences = zip(*picked.head.recognize_many(batch), strict=True)
        cut = float(np.quantile(confidences, 1 - settings.keep))
        chosen = [i for i, c in enumerate(confidences) if c >= cut]
        head = EmbeddingIntents()
        head.fit([*texts, *(pool[i] for i in chosen)], [*labels, *(intents[i] for i in chosen)],
                 encoder)
        picked = SelfLabelled([pool[i] for i in chosen], [intents[i] for i in chosen],
                              [round(float(confidences[i]), 4) for i in chosen], head)
    return picked


def _write_intents(path: Path, intents_file: Path, picked: SelfLabelled) -> None:
    """The examples of ``intents_file``, then the self-labelled questions."""
    from models.default import read_intents

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent", "origin", "confidence"])
        for text, intent in zip(*read_intents(intents_file), strict=True):
            writer.writerow([text, intent, "labelled", ""])
        for text, intent, confidence in zip(picked.texts, picked.intents, picked.confidences,
                                            strict=True):
            writer.writerow([text, intent, "self", confidence])


def write_model_dir(out: Path, intents_file: Path, settings: TuneSettings = TuneSettings(),
                    encoder: str = "minilm",
                    progress: Callable[[int, float], None] | None = None,
                    questions: Sequence[str] = ()) -> Path:
    """A model directory for ``raydesk model use``: MiniLM tuned on the built-in intents
    and ``intents_file`` (``text,intent`` rows), a copy of that file (with the
    ``questions`` it labelled itself, if any: :func:`self_train`), and a ``model.yaml``
    that serves them with the default builder (module docstring)."""
    from models.default import training_examples

    _refuse_existing(out)
    if encoder not in TUNABLE:
        raise ValueError(f"tune: only MiniLM can be fine-tuned, not {encoder!r}")
    texts, labels = training_examples(intents_file)
    with _staged(out) as staging:
        weights = fine_tune(texts, labels, staging / "encoder", settings, progress=progress)
        if questions:
            tuned = MiniLMTorch(threads=settings.threads, source=weights)
            tuned.intent_sharpness = TUNED_SHARPNESS
            _write_intents(staging / "intents.csv", intents_file,
                           self_train(texts, labels, questions, tuned, settings))
        else:
            shutil.copyfile(intents_file, staging / "intents.csv")
        spec = {"builder": "models.default:build",
                "options": {"encoder": encoder, "encoder_dir": "encoder",
                            "intents_file": "intents.csv",
                            "intent_sharpness": TUNED_SHARPNESS}}
        (staging / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    return out
