"""CPU of the default intent head's word n-gram features for one question: sklearn's
``TfidfVectorizer.transform`` against raydesk's direct computation (models.intents.Tfidf,
the same numbers: tests/unit/test_intents.py).

The vectorizer is fitted on the default model's built-in intent examples, as the served
model fits it; each arm then transforms 500 BANKING77 test questions one at a time, in
alternating rounds in one process. Writes benchmarks/results/tfidf_transform.json and .png.
Run: .venv/bin/python benchmarks/tfidf_transform.py   (~10 seconds)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot_latency import banking
from report import own_cpu_s, save

from models.default import training_examples
from models.intents import word_tfidf

QUESTIONS = 500
ROUNDS = 3


def cpu_ms_per_call(transform: Callable[[Sequence[str]], Any], questions: list[str]) -> float:
    started = own_cpu_s()
    for question in questions:
        transform([question])
    return round((own_cpu_s() - started) / len(questions) * 1000, 3)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    labels = [f"{r['arm']}\nround {r['round']}" for r in rows]
    ax.bar(labels, [r["cpu_ms_per_question"] for r in rows])
    ax.set_ylabel("CPU ms per question")
    ax.set_title("Word n-gram TF-IDF features, one question a call", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    _, test = banking()
    questions = test[:QUESTIONS]
    features = word_tfidf()
    features.fit_transform(training_examples()[0])
    arms = {"sklearn": features._vectorizer.transform, "raydesk": features.transform}
    rows = []
    for round_ in range(1, ROUNDS + 1):
        for arm, transform in arms.items():
            rows.append({"arm": arm, "round": round_,
                         "cpu_ms_per_question": cpu_ms_per_call(transform, questions)})
            print(rows[-1], flush=True)
    save("tfidf_transform", {"questions": len(questions), "rounds": ROUNDS}, rows, plot)


if __name__ == "__main__":
    main()
