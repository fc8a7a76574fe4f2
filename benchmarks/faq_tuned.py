"""The FAQ's confidence after ``raydesk model train``: does ``bot.threshold`` keep its
meaning for FAQ answers when the encoder is tuned?

Tuning pulls one intent's examples together and pushes the others apart, which changes
every cosine, and the FAQ's confidence is a calibrated cosine (models/faq.py). Here: MiniLM
tuned on 10 BANKING77 examples per intent (seed 0), as ``raydesk model train`` writes it
(models.tune.write_model_dir) and served from that directory; beside it the default
model with the same examples. The FAQ: 77 items, one per BANKING77 intent, each keyed by
a training question that is not among the 10 (the tuning never saw it). The questions:
BANKING77's test split (the right item is the question's intent) and CLINC150's
out-of-scope test queries (no item is right). Per model and threshold: the share of
BANKING77 questions the FAQ would answer, the share of those answered right, and the
share of out-of-scope queries it would answer (every one a wrong answer). Writes
benchmarks/results/faq_tuned.json and .png.
Run: .venv/bin/python benchmarks/faq_tuned.py   (~8 minutes, most of it the tuning)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from intent_eval import banking77, clinc150, few_shot, write_intents
from report import finish_plot, save

from models.base import FaqItem, Model
from models.default import build
from models.loader import load_model
from models.tune import TuneSettings, write_model_dir

DATA = Path(os.environ.get("RAYDESK_DATA", "/work/shared/data"))
THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]


def faq_scores(model: Model, items: list[FaqItem],
               texts: list[str]) -> list[tuple[str | None, float]]:
    model.index_faq(items)
    return [(a.faq_id, a.faq_confidence) for a in model.analyze(texts)]


def rates(in_scope: list[tuple[str | None, float]], truth: list[str],
          out_of_scope: list[tuple[str | None, float]]) -> list[dict[str, Any]]:
    rows = []
    for threshold in THRESHOLDS:
        answered = [(faq, label) for (faq, c), label in zip(in_scope, truth, strict=True)
                    if c >= threshold]
        right = sum(faq == label for faq, label in answered)
        rows.append({
            "threshold": threshold,
            "in_scope_answered": round(len(answered) / len(truth), 4),
            "answered_right": round(right / len(answered), 4) if answered else None,
            "out_of_scope_answered": round(
                sum(c >= threshold for _, c in out_of_scope) / len(out_of_scope), 4)})
    return rows


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in results.items():
        line = ax.plot([r["threshold"] for r in rows], [r["in_scope_answered"] for r in rows],
                       "o-", label=f"{name}: BANKING77 answered")
        ax.plot([r["threshold"] for r in rows], [r["out_of_scope_answered"] for r in rows],
                "^:", color=line[0].get_color(), label=f"{name}: out-of-scope answered")
    ax.axvline(0.6, color="grey", lw=0.8)
    ax.set_xlabel("FAQ confidence threshold (bot.threshold, default 0.6)")
    ax.set_ylabel("share of questions")
    ax.set_title("FAQ answers, frozen and tuned MiniLM (BANKING77 10-shot)", fontsize=9)
    finish_plot(fig, ax, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = banking77(DATA)
    out_of_scope = clinc150(DATA)["oos_test"][0]
    sample = few_shot(train, 10, args.seed)
    seen = set(sample[0])
    keys: dict[str, str] = {}
    for text, label in zip(*train, strict=True):
        if text not in seen:
            keys.setdefault(label, text)
    items = [FaqItem(label, key, f"About {label}.") for label, key in sorted(keys.items())]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        intents = write_intents(Path(folder) / "intents.csv", sample)
        started = time.perf_counter()
        tuned_dir = write_model_dir(Path(folder) / "tuned", intents,
                                    TuneSettings(seed=args.seed))
        print(f"tuned in {time.perf_counter() - started:.0f} s", flush=True)
        models = {"frozen": build({"intents_file": str(intents)}),
                  "tuned": load_model(str(tuned_dir), "tuned", {})}
        for name, model in models.items():
            in_scope = faq_scores(model, items, test[0])
            results[name] = rates(in_scope, test[1],
                                  faq_scores(model, items, out_of_scope))
            for row in results[name]:
                print(name, row, flush=True)
    save("faq_tuned", {"seed": args.seed, "faq_items": len(items),
                       "in_scope_questions": len(test[0]),
                       "out_of_scope_questions": len(out_of_scope)}, results, plot)


if __name__ == "__main__":
    main()
