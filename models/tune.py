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

The encoder directory is exported to ONNX like the shipped MiniLM (models/encoders.py),
keyed by its own weights, so serving never imports torch.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.encoders import sentence_transformer

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


def write_model_dir(out: Path, intents_file: Path, settings: TuneSettings = TuneSettings(),
                    encoder: str = "minilm",
                    progress: Callable[[int, float], None] | None = None) -> Path:
    """A model directory for ``raydesk model use``: MiniLM tuned on the built-in intents
    and ``intents_file`` (``text,intent`` rows), a copy of that file, and a ``model.yaml``
    that serves them with the default builder (module docstring)."""
    from models.default import training_examples

    _refuse_existing(out)
    if encoder not in TUNABLE:
        raise ValueError(f"tune: only MiniLM can be fine-tuned, not {encoder!r}")
    texts, labels = training_examples(intents_file)
    with _staged(out) as staging:
        fine_tune(texts, labels, staging / "encoder", settings, progress=progress)
        shutil.copyfile(intents_file, staging / "intents.csv")
        spec = {"builder": "models.default:build",
                "options": {"encoder": encoder, "encoder_dir": "encoder",
                            "intents_file": "intents.csv",
                            "intent_sharpness": TUNED_SHARPNESS}}
        (staging / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), "utf-8")
    return out
